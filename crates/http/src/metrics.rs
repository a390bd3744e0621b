//! Prometheus metrics for the HTTP layer, rendered in the text exposition format at
//! `GET /metrics`.
//!
//! Labels are bounded by construction: the route is the matched route template (or
//! `unmatched`), never the raw path, so a scanner cannot create unbounded series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 11] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One route's counters: per (method, status), and its latency histogram.
#[derive(Debug, Default)]
struct RouteSeries {
    /// A handful of (method, status) pairs per route: a short list beats a map, and a
    /// repeat request allocates nothing.
    requests: Vec<(String, u16, u64)>,
    durations: Histogram,
}

#[derive(Debug, Default)]
struct Series {
    routes: BTreeMap<String, RouteSeries>,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<Series>,
}

impl HttpMetrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut s = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Lookups by `&str`: only a route's first request allocates its key.
        if !s.routes.contains_key(route) {
            s.routes.insert(route.to_owned(), RouteSeries::default());
        }
        let Some(r) = s.routes.get_mut(route) else {
            return;
        };
        match r
            .requests
            .iter_mut()
            .find(|(m, st, _)| *st == status && m == method)
        {
            Some((_, _, n)) => *n += 1,
            None => r.requests.push((method.to_owned(), status, 1)),
        }
        let h = &mut r.durations;
        for (bound, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text.
    #[must_use]
    pub fn render(&self) -> String {
        let s = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP tollgate_build_info Tollgate version.");
        let _ = writeln!(out, "# TYPE tollgate_build_info gauge");
        let _ = writeln!(
            out,
            "tollgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_http_requests_total HTTP requests served."
        );
        let _ = writeln!(out, "# TYPE tollgate_http_requests_total counter");
        let mut requests: Vec<(&str, &str, u16, u64)> = s
            .routes
            .iter()
            .flat_map(|(route, r)| {
                r.requests
                    .iter()
                    .map(move |(m, status, n)| (route.as_str(), m.as_str(), *status, *n))
            })
            .collect();
        requests.sort_unstable();
        for (route, method, status, n) in requests {
            let _ = writeln!(
                out,
                "tollgate_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_http_request_duration_seconds Time to answer HTTP requests."
        );
        let _ = writeln!(
            out,
            "# TYPE tollgate_http_request_duration_seconds histogram"
        );
        for (route, r) in &s.routes {
            let h = &r.durations;
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "tollgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = HttpMetrics::default();
        m.observe("/a", "POST", 200, Duration::from_micros(700));
        m.observe("/a", "POST", 200, Duration::from_millis(30));
        m.observe("/a", "POST", 401, Duration::from_secs(2));
        let text = m.render();
        assert!(text.contains(
            "tollgate_http_requests_total{route=\"/a\",method=\"POST\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "tollgate_http_requests_total{route=\"/a\",method=\"POST\",status=\"401\"} 1"
        ));
        assert!(text.contains("_bucket{route=\"/a\",le=\"0.0005\"} 0"));
        assert!(text.contains("_bucket{route=\"/a\",le=\"0.001\"} 1"));
        assert!(text.contains("_bucket{route=\"/a\",le=\"0.05\"} 2"));
        assert!(text.contains("_bucket{route=\"/a\",le=\"1\"} 2"));
        assert!(text.contains("_bucket{route=\"/a\",le=\"+Inf\"} 3"));
        assert!(text.contains("_count{route=\"/a\"} 3"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn series_come_out_sorted_by_route_method_status() {
        let m = HttpMetrics::default();
        m.observe("/b", "GET", 200, Duration::from_millis(1));
        m.observe("/a", "POST", 200, Duration::from_millis(1));
        m.observe("/a", "GET", 404, Duration::from_millis(1));
        m.observe("/a", "GET", 200, Duration::from_millis(1));
        let text = m.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tollgate_http_requests_total{"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"tollgate_http_requests_total{route="/a",method="GET",status="200"} 1"#,
                r#"tollgate_http_requests_total{route="/a",method="GET",status="404"} 1"#,
                r#"tollgate_http_requests_total{route="/a",method="POST",status="200"} 1"#,
                r#"tollgate_http_requests_total{route="/b",method="GET",status="200"} 1"#,
            ]
        );
        let a = text.find(r#"_count{route="/a"} 3"#).expect("a's histogram");
        let b = text.find(r#"_count{route="/b"} 1"#).expect("b's histogram");
        assert!(a < b);
    }
}
