//! `https://HOST:PORT` addresses (of master targets and of the site itself), validated once.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A validated `https://HOST:PORT`: no path, query or user part, an explicit port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("url {url:?}: give https://HOST:PORT (the control API is served over TLS only)");
        }
        let Some(auth) = uri.authority() else {
            bail!("url {url:?}: no host");
        };
        if auth.as_str().contains('@') {
            bail!("url {url:?}: no user part, please (authentication is by certificate)");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("url {url:?}: give https://HOST:PORT with no path");
        }
        let Some(port) = auth.port_u16() else {
            bail!("url {url:?}: give the port (https://HOST:PORT)");
        };
        if port == 0 {
            bail!("url {url:?}: port 0");
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("url {url:?}: no host");
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// As stored and shown: `https://HOST:PORT`.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated() {
        let e = Endpoint::parse("https://127.0.0.1:7443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 7443));
        assert_eq!(e.url(), "https://127.0.0.1:7443");
        assert_eq!(
            Endpoint::parse("https://[::1]:9/").unwrap().url(),
            "https://[::1]:9"
        );
        for (bad, why) in [
            ("http://h:1", "https://"),
            ("https://h", "port"),
            ("https://h:1/v1", "no path"),
            ("https://u@h:1", "user"),
            ("https://h:0", "port 0"),
            ("h:1", "https://"),
            ("not a url", "not a URL"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
