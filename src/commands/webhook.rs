//! `plaid-vcr webhook fire`: asks a running plaid-vcr (replaying) to send the app a signed
//! webhook of Plaid's spec, as `POST /plaid-vcr/webhooks/fire` does for tests over HTTP.

use serde_json::{Map, Value};

use super::Output;
use crate::error::Error;

/// What to fire, and where plaid-vcr listens.
#[derive(Debug, Clone, Default)]
pub struct Fire {
    /// plaid-vcr's own address, e.g. `http://127.0.0.1:8080`.
    pub vcr: String,
    pub webhook_type: String,
    pub webhook_code: String,
    pub item_id: Option<String>,
    pub session: Option<String>,
    /// `KEY=VALUE` fields over the spec's example; a VALUE that is JSON is taken as JSON.
    pub fields: Vec<String>,
    /// Where it goes, instead of the URL the session registered.
    pub to: Option<String>,
}

/// Sends the request and prints where the webhook went and what the app answered.
pub async fn fire(fire: &Fire) -> Result<Output, Error> {
    let mut fields = Map::new();
    for field in &fire.fields {
        let (key, value) = field.split_once('=').ok_or_else(|| Error::Usage {
            message: format!("--field {field} is not KEY=VALUE"),
        })?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        fields.insert(key.to_owned(), value);
    }
    let body = serde_json::json!({
        "webhook_type": fire.webhook_type,
        "webhook_code": fire.webhook_code,
        "item_id": fire.item_id,
        "session": fire.session,
        "fields": fields,
        "url": fire.to,
    });
    let url = format!("{}/plaid-vcr/webhooks/fire", fire.vcr.trim_end_matches('/'));
    let (status, answer) = super::post_json(&url, &body)
        .await
        .map_err(|reason| Error::Unreachable {
            url: url.clone(),
            reason,
        })?;
    if !status.is_success() {
        let text = |k: &str| answer[k].as_str().unwrap_or("").to_owned();
        return Err(Error::Usage {
            message: format!("{}: {}", text("error_code"), text("error_message")),
        });
    }
    Ok(Output {
        text: format!(
            "fired {} {} to {} (the app answered {})\n",
            fire.webhook_type,
            fire.webhook_code,
            answer["delivered_to"].as_str().unwrap_or("?"),
            answer["status"]
        ),
        clean: true,
    })
}
