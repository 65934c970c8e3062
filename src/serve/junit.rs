//! The run as JUnit XML (`--junit FILE`), which every CI system shows: one `<testcase>` per
//! named session, failed by its misses (and under `--strict` by its unused recordings and
//! failed webhook deliveries), and one for the requests that named no session, if any missed.
//! Endpoints, keys and explanations only: never a body.

use std::fmt::Write as _;

use crate::contract::{Part, Severity};
use crate::serve::summary::{Entry, Report, Summary};
use crate::store::key;

/// The name of the test case for requests that named no session.
const NO_SESSION: &str = "(no session)";

impl Summary {
    /// The run as a JUnit XML document: a test case per session.
    pub fn to_junit(&self, strict: bool) -> String {
        render(self, strict)
    }
}

/// `summary` as a JUnit XML document.
fn render(summary: &Summary, strict: bool) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures) = (0, 0);
    for (name, report) in &summary.sessions {
        tests += 1;
        let problems = problems(report, strict);
        failures += usize::from(!problems.is_empty());
        case(&mut cases, name, &problems);
    }
    // Misses of requests without a session: the run's, less the sessions' own.
    let mut in_sessions: Vec<&Entry> = summary.sessions.values().flat_map(|r| &r.misses).collect();
    let mut unsessioned = Vec::new();
    for miss in &summary.misses {
        match in_sessions
            .iter()
            .position(|m| m.endpoint == miss.endpoint && m.key == miss.key)
        {
            Some(at) => {
                in_sessions.swap_remove(at);
            }
            None => unsessioned.push(miss_line(miss)),
        }
    }
    if !unsessioned.is_empty() || summary.sessions.is_empty() {
        tests += 1;
        failures += usize::from(!unsessioned.is_empty());
        case(&mut cases, NO_SESSION, &unsessioned);
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"plaid-vcr\" tests=\"{tests}\" failures=\"{failures}\">\n\
         <testsuite name=\"plaid-vcr {mode}\" tests=\"{tests}\" failures=\"{failures}\">\n{cases}</testsuite>\n</testsuites>\n",
        mode = escape(&summary.mode),
    )
}

/// What fails a session's test case, one line each.
fn problems(report: &Report, strict: bool) -> Vec<String> {
    let mut out: Vec<String> = report.misses.iter().map(miss_line).collect();
    if strict {
        for unused in &report.unused {
            let file = unused.file.as_deref().unwrap_or("?");
            out.push(format!("unused recording {} ({file})", unused.endpoint));
        }
        if report.webhooks.failed > 0 {
            out.push(format!("{} webhook deliveries failed", report.webhooks.failed));
        }
        for v in report
            .violations
            .iter()
            .filter(|v| v.part == Part::Request && v.severity == Severity::Error)
        {
            out.push(format!(
                "request {} breaks Plaid's spec at {:?}: {} (expected {})",
                v.endpoint, v.path, v.rule, v.expected
            ));
        }
    }
    out
}

fn miss_line(miss: &Entry) -> String {
    let why = miss.explanation.as_deref().unwrap_or("no recording");
    format!("miss {} {}: {why}", miss.endpoint, key::prefix(&miss.key))
}

fn case(out: &mut String, name: &str, problems: &[String]) {
    let name = escape(name);
    if problems.is_empty() {
        let _ = writeln!(out, "<testcase classname=\"plaid-vcr\" name=\"{name}\"/>");
        return;
    }
    let message = escape(&format!("{} problems with recordings", problems.len()));
    let text = escape(&problems.join("\n"));
    let _ = writeln!(
        out,
        "<testcase classname=\"plaid-vcr\" name=\"{name}\">\n<failure message=\"{message}\">{text}</failure>\n</testcase>"
    );
}

/// Text as XML character data or an attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to write other control characters.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::summary::Tally;

    fn miss(endpoint: &str, key: &str, why: &str) -> Entry {
        Entry {
            endpoint: endpoint.into(),
            key: key.into(),
            file: None,
            recorded_at: None,
            explanation: Some(why.into()),
        }
    }

    #[test]
    fn each_session_is_a_test_case_failed_by_its_misses_and_strictly_by_unused_recordings() {
        let mut summary = Tally::default().summary("replay", [], None);
        let a_miss = miss(
            "identity/get",
            "abcdef0123456789ff",
            "the closest differs in <access_token> & more",
        );
        summary.misses = vec![a_miss.clone(), miss("accounts/get", "0123", "nothing recorded")];
        let mut failing = Report::default();
        failing.misses.push(a_miss);
        let mut unused = Report::default();
        unused.unused.push(Entry {
            endpoint: "auth/get".into(),
            key: "t2/k".into(),
            file: Some("sessions/t2/auth_get/k.json".into()),
            recorded_at: None,
            explanation: None,
        });
        summary.sessions.insert("tests/t1".into(), failing);
        summary.sessions.insert("tests/t2".into(), unused);

        let xml = render(&summary, false);
        assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
        assert!(
            xml.contains("<testcase classname=\"plaid-vcr\" name=\"tests/t1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("differs in &lt;access_token&gt; &amp; more"),
            "escaped: {xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"plaid-vcr\" name=\"tests/t2\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"(no session)\">"),
            "the miss no session owns: {xml}"
        );
        assert!(xml.contains("miss accounts/get 0123: nothing recorded"), "{xml}");

        let strict = render(&summary, true);
        assert!(strict.contains("tests=\"3\" failures=\"3\""), "{strict}");
        assert!(
            strict.contains("unused recording auth/get (sessions/t2/auth_get/k.json)"),
            "{strict}"
        );
    }
}
