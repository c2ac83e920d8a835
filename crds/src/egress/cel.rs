//! The CRDs' CEL twins of the egress classifier, so a cluster refuses the plain local targets
//! at admission, before any gateway sees the object.
//!
//! A regular expression cannot read a URL the way the gateway's parser does (it maps numeric,
//! percent-encoded and full-width hosts to addresses), so the shape rule first narrows the
//! host to ASCII names, dotted IPv4 and bracketed IPv6 without user information; the other
//! rules then match literal hosts. They are a first line only: the compiler's
//! [`super::is_forbidden_url_host`] and the gateway's connect-time resolver stay the guard.
//! Where a form is rare and hard to match exactly (IPv6 that embeds IPv4), these rules refuse
//! the whole form. Every pattern is anchored and linear, well inside the API server's cost
//! budget for a 2048-character string.
//!
//! The constants are CEL string contents: each regular-expression backslash is doubled.

/// Scheme, an ASCII host (name, IPv4 or bracketed IPv6), an optional port and a path.
const SHAPE: &str = r"^https?://[-a-zA-Z0-9._:\\[\\]]+(/[^?#\\s]*)?$";

/// Like [`SHAPE`] but a query may follow (identity providers key some JWKS by query).
const SHAPE_WITH_QUERY: &str = r"^https?://[-a-zA-Z0-9._:\\[\\]]+([/?][^#\\s]*)?$";

/// Local names, IPv4 literals in local ranges (each followed by the end of the host), and
/// IPv6 literals that start in a local prefix. Mirrors `FORBIDDEN_NAMES`, `FORBIDDEN_V4` and
/// the IPv6 prefixes of `is_forbidden_v6`.
const LOCAL: &str = concat!(
    r"(?i)^https?://(",
    r"([-a-z0-9_]+[.])*localhost|localhost[.]localdomain|metadata([.]google[.]internal|[.]goog)?",
    r"|instance-data([.]ec2[.]internal)?|metadata[.]tencentyun[.]com",
    r"|kubernetes([.]default([.]svc([.]cluster[.]local)?)?)?",
    r")[.]?(:[0-9]*)?([/?#]|$)",
    r"|^https?://(",
    r"((0|10|127|22[4-9]|2[3-5][0-9])[.][0-9]{1,3}|100[.](6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])",
    r"|169[.]254|172[.](1[6-9]|2[0-9]|3[01])|192[.]168|198[.]1[89])[.][0-9]{1,3}[.][0-9]{1,3}",
    r"|192[.]0[.]0[.][0-9]{1,3}|168[.]63[.]129[.]16",
    r")(:[0-9]*)?([/?#]|$)",
    r"|^https?://\\[(0{0,4}:|f[cd][0-9a-f]{2}:|fe[89a-f][0-9a-f]:|ff[0-9a-f]{2}:|2001:0{0,1}db8:)",
);

/// A host whose last label is a number: the URL parser reads it as an IPv4 address.
const NUMERIC: &str = r"(?i)^https?://([-a-z0-9_]+[.])*(0x[0-9a-f]*|[0-9]+)[.]?(:[0-9]*)?([/?#]|$)";

/// Four decimal octets without leading zeros: the only IPv4 form [`LOCAL`] can judge.
const CANONICAL_V4: &str = concat!(
    r"(?i)^https?://((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}",
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(:[0-9]*)?([/?#]|$)",
);

/// IPv6 literals that carry an IPv4 address: NAT64, 6to4 and Teredo.
const TRANSLATED_V6: &str = r"(?i)^https?://\\[(0{0,2}64:ff9b:|0{0,1}2002:|2001:(0{1,4})?:)";

/// `self.<field>`, when set, is scheme, ASCII host, optional port and path only (with a query
/// when `query` is true): no user information, fragment, percent sign or backslash, which
/// parsers disagree on.
pub(crate) fn shape_rule(field: &str, query: bool) -> String {
    let pattern = if query { SHAPE_WITH_QUERY } else { SHAPE };
    format!("!has(self.{field}) || self.{field}.matches('{pattern}')")
}

/// `self.<field>`, when set and unless `allowed` (a CEL condition) holds, does not name a
/// local, private or metadata host literally.
pub(crate) fn local_rule(field: &str, allowed: &str) -> String {
    format!("!has(self.{field}) || {allowed} || !self.{field}.matches('{LOCAL}')")
}

/// `self.<field>`, when set and unless `allowed` holds, writes no IPv4 address in a form
/// [`local_rule`] cannot judge (2130706433, 0x7f.1, 127.1, 010.0.0.1) and no IPv6 address that
/// embeds an IPv4 one.
pub(crate) fn unusual_ip_rule(field: &str, allowed: &str) -> String {
    format!(
        "!has(self.{field}) || {allowed} || !((self.{field}.matches('{NUMERIC}') && \
         !self.{field}.matches('{CANONICAL_V4}')) || self.{field}.matches('{TRANSLATED_V6}'))"
    )
}

#[cfg(test)]
mod tests {
    use kube::core::cel::validate_cel;

    use crate::manifest::Manifests;

    fn manifests(yaml: &str) -> Manifests {
        let mut m = Manifests::default();
        m.add_yaml("test.yaml", yaml).unwrap();
        m
    }

    /// The CEL failures of an openaiCompatible provider at `url`, or `None`.
    fn provider_errors(url: &str, allow: bool) -> Option<String> {
        let m = manifests(&format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p}}\n\
             spec: {{type: openaiCompatible, baseUrl: '{url}', allowLocalAddresses: {allow}}}\n"
        ));
        validate_cel(&m.providers[0]).err().map(|e| e.to_string())
    }

    const REFUSED_BASE_URLS: &[&str] = &[
        "http://LOCALHOST./v1",
        "http://api.localhost:8000/v1",
        "http://metadata/computeMetadata/v1",
        "http://Metadata.Google.Internal./",
        "http://instance-data/latest",
        "http://kubernetes.default.svc/api",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",
        "http://[::127.0.0.1]:8000/v1",
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[0:0:0:0:0:0:0:1]/v1",
        "http://[fe80::1]/v1",
        "http://[2002:7f00:1::]/v1",
        "http://10.0.0.1",
        "http://172.16.0.1/v1",
        "http://192.168.1.10:8000/v1",
        "http://127.0.0.1./v1",
        "http://2130706433/v1",
        "http://0x7f.1/v1",
        "http://127.1/v1",
        "http://010.0.0.1/v1",
        "http://0.0.0.0:8000/v1",
        "http://168.63.129.16/",
    ];

    #[test]
    fn local_literals_in_base_urls_are_refused_unless_allowed() {
        for url in REFUSED_BASE_URLS {
            let errors = provider_errors(url, false).unwrap_or_else(|| panic!("{url} passed CEL"));
            assert!(
                errors.contains("spec.baseUrl points at a loopback")
                    || errors.contains("spec.baseUrl writes an IP address"),
                "{url}: {errors}"
            );
            assert_eq!(
                provider_errors(url, true),
                None,
                "{url} with allowLocalAddresses"
            );
        }
    }

    #[test]
    fn base_urls_with_more_than_scheme_host_port_and_path_are_refused() {
        for url in [
            "https://api.example.com/v1?x=1",
            "https://api.example.com/v1#f",
            "https://user:pass@api.example.com/v1",
            "http://127.0.0.1\\evil.example.com/v1",
            "http://%31%32%37.0.0.1/v1",
            "http://１２７.０.０.１/v1",
        ] {
            for allow in [false, true] {
                let errors =
                    provider_errors(url, allow).unwrap_or_else(|| panic!("{url} passed CEL"));
                assert!(
                    errors.contains("spec.baseUrl must be http(s)://host[:port][/path]"),
                    "{url}: {errors}"
                );
            }
        }
    }

    #[test]
    fn public_base_urls_pass() {
        for url in [
            "https://api.openai.com/v1",
            "https://x.openai.azure.com",
            "http://llm.example.com:8080/v1",
            "https://[2606:4700:4700::1111]/v1",
            "http://8.8.8.8/v1",
            "http://10.example.com/v1",
            "http://localhost.example.com/v1",
            "http://metadata.example.com/v1",
            "http://172.32.0.1/v1",
            "http://223.1.1.1/v1",
            "http://my-vllm:8000/v1",
        ] {
            assert_eq!(provider_errors(url, false), None, "{url}");
        }
    }

    fn jwt_errors(jwt: &str) -> Option<String> {
        let m = manifests(&format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: g}}\n\
             spec: {{auth: {{jwt: {{issuer: i, audiences: [a], {jwt}}}}}}}\n"
        ));
        validate_cel(&m.gateways[0]).err().map(|e| e.to_string())
    }

    #[test]
    fn jwks_uris_get_the_same_literal_checks_and_may_carry_a_query() {
        for uri in [
            "https://169.254.169.254/keys",
            "https://LOCALHOST./keys",
            "https://[::ffff:127.0.0.1]/keys",
        ] {
            let errors = jwt_errors(&format!("jwksUri: '{uri}'"))
                .unwrap_or_else(|| panic!("{uri} passed CEL"));
            assert!(
                errors.contains("spec.auth.jwt.jwksUri points at a loopback"),
                "{uri}: {errors}"
            );
            let allowed = format!("jwksUri: '{uri}', allowLocalAddresses: true");
            assert_eq!(jwt_errors(&allowed), None, "{uri}");
        }
        let errors = jwt_errors("jwksUri: 'https://user@idp.example.com/keys'").unwrap_or_default();
        assert!(errors.contains("jwksUri must be"), "{errors}");
        let keyed = "jwksUri: 'https://login.example.com/common/discovery/v2.0/keys?appid=x'";
        assert_eq!(jwt_errors(keyed), None);
    }
}
