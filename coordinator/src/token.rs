//! A configured secret (`SWARMQ_API_TOKEN`, `SWARMQ_METRICS_TOKEN`), checked by the HTTP bearer
//! middleware and by the Socket.IO connect handler alike.

use std::sync::Arc;

/// A configured token; comparison takes the same time whatever the guess.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token))
    }

    /// `None` for an unset or empty setting (the resource is then open).
    pub fn from_setting(setting: Option<&str>) -> Option<Self> {
        setting.filter(|t| !t.is_empty()).map(Self::new)
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, byte) in a.iter().enumerate() {
            diff |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn only_the_exact_token_matches() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        for bad in ["", "s3cre", "s3cret!", "S3cret"] {
            assert!(!t.matches(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_setting_means_no_token() {
        assert!(Token::from_setting(None).is_none());
        assert!(Token::from_setting(Some("")).is_none());
        assert!(Token::from_setting(Some("x")).is_some());
    }
}
