//! Scraping a Prometheus endpoint (the agent's `/metrics`, HAProxy's exporter) and
//! reading its samples, for tests that check figures follow what happened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::http;

/// One sample: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// One scrape: every sample, and the `# TYPE` of every family.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// Family name -> `counter`, `gauge`, `histogram`...
    pub types: BTreeMap<String, String>,
}

/// `GET /metrics` from `addr`: it must answer 200 with the text format.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let r = http::get(addr, "/metrics", Duration::from_secs(5))
        .with_context(|| format!("scraping http://{addr}/metrics"))?;
    anyhow::ensure!(
        r.status == 200,
        "http://{addr}/metrics answered {}: {}",
        r.status,
        r.body
    );
    Scrape::parse(&r.body)
}

impl Scrape {
    /// Parses Prometheus' text format (0.0.4): comments, then `name{labels} value
    /// [timestamp]` lines.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut out = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    out.types.insert(name.to_string(), kind.trim().to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            out.samples
                .push(parse_sample(line).with_context(|| format!("bad sample line {line:?}"))?);
        }
        Ok(out)
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample named `name` with `labels` (`None`: none, or more
    /// than one, matches).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut m = self.matching(name, labels);
        let first = m.next()?;
        m.next().is_none().then_some(first.value)
    }

    /// The sum of the samples named `name` with `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = body
                .split_once("=\"")
                .context("a label without a quoted value")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => {}
                    },
                    '"' => {
                        close = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let close = close.context("an unterminated label value")?;
            labels.insert(key.trim().to_string(), value);
            body = &after[close..];
        }
    }
    let value = rest.split_whitespace().next().context("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().with_context(|| format!("value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels_parse() {
        let s = Scrape::parse(
            "# HELP a_total x\n# TYPE a_total counter\na_total 3\nb{p=\"w,e\",q=\"x\\\"y\"} 1.5 123\nc_bucket{le=\"+Inf\"} +Inf\n",
        )
        .unwrap();
        assert_eq!(s.types["a_total"], "counter");
        assert_eq!(s.value("a_total", &[]), Some(3.0));
        assert_eq!(s.value("b", &[("p", "w,e")]), Some(1.5));
        assert_eq!(s.value("b", &[("q", "x\"y")]), Some(1.5));
        assert_eq!(s.value("c_bucket", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert_eq!(s.sum("b", &[]), 1.5);
        assert_eq!(s.value("nope", &[]), None);
    }
}
