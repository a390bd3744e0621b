//! Browser origin allowlists: the one matcher behind the WebSocket gateway's
//! `gateway.allowed_origins` and the HTTP layer's CORS (`http.cors_allowed_origins`), so a
//! page allowed to connect is allowed to fetch its tokens, by the same rules.

/// Whether `origin` (the `Origin` header of a browser request) matches one of `patterns`:
/// `*` (any), an exact origin such as `https://app.example.com`, or
/// `https://*.example.com` (any subdomain, not the bare domain). Case-insensitive, as
/// scheme and host are.
#[must_use]
pub fn origin_matches(patterns: &[String], origin: &str) -> bool {
    patterns.iter().any(|pattern| {
        if pattern == "*" {
            return true;
        }
        match split_wildcard(pattern) {
            Some((scheme, domain)) => {
                let Some(host) =
                    strip_prefix_ci(origin, scheme).and_then(|rest| rest.strip_prefix("://"))
                else {
                    return false;
                };
                host.len() > domain.len() + 1
                    && host.is_char_boundary(host.len() - domain.len())
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
            None => pattern.eq_ignore_ascii_case(origin),
        }
    })
}

/// `https://*.example.com` → `("https", "example.com")`.
fn split_wildcard(pattern: &str) -> Option<(&str, &str)> {
    pattern.split_once("://*.")
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    fn list(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exact_wildcard_and_star() {
        let p = list(&["https://app.example.com", "https://*.corp.example"]);
        assert!(origin_matches(&p, "https://app.example.com"));
        assert!(origin_matches(&p, "HTTPS://APP.example.com"));
        assert!(!origin_matches(&p, "http://app.example.com"));
        assert!(!origin_matches(&p, "https://app.example.com.evil"));
        assert!(origin_matches(&p, "https://a.corp.example"));
        assert!(origin_matches(&p, "https://a.b.corp.example"));
        assert!(!origin_matches(&p, "https://corp.example"));
        assert!(!origin_matches(&p, "https://evilcorp.example"));
        assert!(!origin_matches(&p, "http://a.corp.example"));
        assert!(!origin_matches(&p, "null"));
        assert!(origin_matches(&list(&["*"]), "null"));
        assert!(!origin_matches(&[], "https://app.example.com"));
    }

    #[test]
    fn multibyte_origins_do_not_panic() {
        let p = list(&["https://*.é.example", "https://ü"]);
        assert!(!origin_matches(&p, "https://ééé"));
        assert!(!origin_matches(&p, "ü"));
        assert!(origin_matches(&p, "https://a.é.example"));
    }
}
