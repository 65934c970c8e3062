//! Dates that do not go stale: `replay --shift-dates` moves every date and date-time of an
//! answer by the whole days between the day it was recorded and today, by Plaid's own schema.
//!
//! Owns the table of Plaid's date fields (`plaid_dates.tsv`, generated from the pinned spec by
//! `tools/plaid_dates.py`, facts about the past such as dates of birth marked `fixed`), the
//! shift of one value (the date moves; a time of day, a zone, every other byte stays) and of
//! one answer. Pure functions over `serde_json` values: no I/O, no clock (today is given).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use time::macros::format_description;
use time::Date;

/// The table, generated; see its header for the spec commit.
const TABLE: &str = include_str!("plaid_dates.tsv");

/// `YYYY-MM-DD`, the form every Plaid date and date-time starts with.
const DAY: &[time::format_description::BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// The paths of the shiftable date fields of each (endpoint, side): `response` for answers
/// (`webhook` is the endpoint of webhooks), `request` for what the app sends.
fn table() -> &'static HashMap<(&'static str, &'static str), Vec<&'static str>> {
    type ByEndpoint = HashMap<(&'static str, &'static str), Vec<&'static str>>;
    static TABLE_BY_ENDPOINT: OnceLock<ByEndpoint> = OnceLock::new();
    TABLE_BY_ENDPOINT.get_or_init(|| {
        let mut by_endpoint: ByEndpoint = HashMap::new();
        for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let cells: Vec<&'static str> = line.split('\t').collect();
            if let [endpoint, side, path, _format, "shift"] = cells[..] {
                by_endpoint.entry((endpoint, side)).or_default().push(path);
            }
        }
        by_endpoint
    })
}

/// A calendar day from `YYYY-MM-DD` (a date, or the start of a date-time).
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text.get(..10)?, DAY).ok()
}

/// The whole days from `recorded_at` (RFC 3339) to `today`.
pub fn days_since(recorded_at: &str, today: Date) -> Option<i64> {
    Some((today - parse_day(recorded_at)?).whole_days())
}

/// `text` with its leading date moved by `days`, every byte after it kept (`T10:00:00Z`,
/// `T10:00:00.123-05:00`); `None` if it does not start with a date.
pub fn shift_str(text: &str, days: i64) -> Option<String> {
    let day = parse_day(text)?;
    let moved = day.checked_add(time::Duration::days(days))?.format(DAY).ok()?;
    Some(format!("{moved}{}", &text[10..]))
}

/// Moves every shiftable date field of `endpoint`'s answer `body` by `days`; how many moved.
pub fn shift_answer(endpoint: &str, body: &mut Value, days: i64) -> usize {
    shift(endpoint, "response", body, days)
}

/// Moves every date field of a request to `endpoint` by `days` (to read it as relative to
/// another day); how many moved.
pub fn shift_request(endpoint: &str, body: &mut Value, days: i64) -> usize {
    shift(endpoint, "request", body, days)
}

fn shift(endpoint: &str, side: &'static str, body: &mut Value, days: i64) -> usize {
    let Some(paths) = table().get(&(endpoint, side)) else {
        return 0;
    };
    let mut moved = 0;
    for path in paths {
        let segments: Vec<&str> = path.split('.').collect();
        shift_at(body, &segments, days, &mut moved);
    }
    moved
}

/// Follows `path` (`transactions[].date`) into `value`, shifting the strings it ends at.
fn shift_at(value: &mut Value, path: &[&str], days: i64, moved: &mut usize) {
    let Some((first, rest)) = path.split_first() else {
        if let Value::String(text) = value {
            if let Some(new) = shift_str(text, days) {
                *text = new;
                *moved += 1;
            }
        }
        return;
    };
    let name = first.trim_end_matches("[]");
    let arrays = (first.len() - name.len()) / 2;
    let next = if name.is_empty() {
        Some(value)
    } else {
        value.get_mut(name)
    };
    let Some(next) = next else { return };
    if arrays == 0 {
        return shift_at(next, rest, days, moved);
    }
    // `a[]` (and `a[][]`): every element.
    fn each(value: &mut Value, depth: usize, rest: &[&str], days: i64, moved: &mut usize) {
        match value {
            Value::Array(items) if depth > 0 => {
                for item in items {
                    each(item, depth - 1, rest, days, moved);
                }
            }
            other if depth == 0 => shift_at(other, rest, days, moved),
            _ => {}
        }
    }
    each(next, arrays, rest, days, moved);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_date_moves_and_every_byte_after_it_stays() {
        assert_eq!(shift_str("2024-03-01", 3).as_deref(), Some("2024-03-04"));
        assert_eq!(
            shift_str("2024-02-28T10:00:00Z", 1).as_deref(),
            Some("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            shift_str("2024-12-31T23:59:59.123-05:00", 1).as_deref(),
            Some("2025-01-01T23:59:59.123-05:00")
        );
        assert_eq!(shift_str("2025-03-01", -366).as_deref(), Some("2024-02-29"));
        assert_eq!(shift_str("not a date", 1), None);
        assert_eq!(shift_str("2024-13-01", 1), None);
    }

    #[test]
    fn an_answer_moves_its_dates_by_the_schema_and_keeps_the_gaps_between_them() {
        let mut body = json!({
            "transactions": [
                {"date": "2024-03-01", "authorized_date": "2024-02-28", "name": "2024-03-01 is not a date field",
                 "datetime": "2024-03-01T10:00:00Z", "authorized_datetime": null},
                {"date": "2024-03-02", "pending": true}
            ],
            "accounts": [{"balances": {"last_updated_datetime": "2024-03-02T00:00:00Z"}}],
            "total_transactions": 2
        });
        let moved = shift_answer("transactions/get", &mut body, 100);
        assert_eq!(moved, 5);
        assert_eq!(body["transactions"][0]["date"], "2024-06-09");
        assert_eq!(
            body["transactions"][0]["authorized_date"], "2024-06-07",
            "two days before, still"
        );
        assert_eq!(body["transactions"][0]["datetime"], "2024-06-09T10:00:00Z");
        assert_eq!(body["transactions"][0]["name"], "2024-03-01 is not a date field");
        assert!(body["transactions"][0]["authorized_datetime"].is_null());
        assert_eq!(
            body["accounts"][0]["balances"]["last_updated_datetime"],
            "2024-06-10T00:00:00Z"
        );
        assert_eq!(shift_answer("transactions/get", &mut body, -100), 5);
        assert_eq!(body["transactions"][1]["date"], "2024-03-02", "back where it was");
    }

    #[test]
    fn facts_about_the_past_never_move() {
        let fixed: Vec<&str> = TABLE
            .lines()
            .filter(|l| l.ends_with("\tfixed"))
            .filter_map(|l| l.split('\t').nth(2))
            .map(|p| p.rsplit('.').next().unwrap_or(p))
            .collect();
        for field in ["date_of_birth", "issue_date", "formation_date"] {
            assert!(fixed.contains(&field), "{field} is marked fixed");
        }
        let mut body = json!({"identity": {"date_of_birth": "1990-01-01"}});
        assert_eq!(shift_answer("identity_verification/get", &mut body, 30), 0);
        assert_eq!(
            days_since(
                "2024-03-01T12:00:00Z",
                Date::from_calendar_date(2025, time::Month::March, 1).unwrap()
            ),
            Some(365)
        );
    }
}
