//! The messages of a request stream: the client's hello and requests, the origin's
//! answers (`docs/interaction.md` §1).

use serde::{Deserialize, Serialize};

/// The first frame a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "HelloFrame", into = "HelloFrame")]
pub struct Hello {
    pub broadcast: String,
    pub token: Option<String>,
}

/// [`Hello`] on the wire, where its `type` must say `hello`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HelloFrame {
    Hello {
        broadcast: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

impl From<HelloFrame> for Hello {
    fn from(HelloFrame::Hello { broadcast, token }: HelloFrame) -> Self {
        Hello { broadcast, token }
    }
}

impl From<Hello> for HelloFrame {
    fn from(Hello { broadcast, token }: Hello) -> Self {
        HelloFrame::Hello { broadcast, token }
    }
}

/// One request: an idempotency key and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub key: String,
    #[serde(flatten)]
    pub action: Action,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Chat {
        text: String,
    },
    React {
        emoji: String,
    },
    Vote {
        poll: u64,
        option: usize,
    },
    Tip {
        amount: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Credit {
        amount: u64,
    },
    PollOpen {
        question: String,
        options: Vec<String>,
        duration_secs: u64,
    },
    PollClose {
        poll: u64,
    },
    Goal {
        title: String,
        target: u64,
    },
    Delete {
        message: u64,
    },
    Timeout {
        user: String,
        secs: u64,
    },
    Ban {
        user: String,
    },
    Unban {
        user: String,
    },
    SlowMode {
        secs: u64,
    },
}

impl Action {
    /// Whether the request changes the tip ledger (and so needs exactly-once storage).
    pub fn moves_credits(&self) -> bool {
        matches!(self, Action::Tip { .. } | Action::Credit { .. })
    }
}

/// Why a request was not applied: what a UI shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    RateLimited,
    TooLong,
    PollClosed,
    AlreadyVoted,
    InsufficientBalance,
    Banned,
    TimedOut,
    NotAuthorized,
    Invalid,
    Unavailable,
    TooLarge,
}

/// A frame the origin (or a relay that cannot reach it) sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    Welcome {
        user: Option<String>,
        name: Option<String>,
        role: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance: Option<u64>,
    },
    Accepted {
        key: String,
        seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance: Option<u64>,
    },
    Rejected {
        key: String,
        reason: Reason,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The stream as a whole failed (bad hello, oversized frame); it is closed after this.
    Error { reason: Reason, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_shape() {
        let request: Request =
            serde_json::from_str(r#"{"type":"tip","key":"k1","amount":50,"message":"gg"}"#)
                .unwrap();
        assert_eq!(
            request,
            Request {
                key: "k1".into(),
                action: Action::Tip {
                    amount: 50,
                    message: Some("gg".into())
                }
            }
        );
        let back = serde_json::to_value(&request).unwrap();
        assert_eq!(back["type"], "tip");
        let open: Request = serde_json::from_str(
            r#"{"type":"poll_open","key":"p","question":"q","options":["a","b"],"duration_secs":30,"extra":1}"#,
        )
        .unwrap();
        assert!(matches!(open.action, Action::PollOpen { .. }));
        assert!(serde_json::from_str::<Request>(r#"{"type":"launch","key":"k"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"type":"chat","text":"no key"}"#).is_err());
    }

    #[test]
    fn answers_have_the_documented_shape() {
        let rejected = Answer::Rejected {
            key: "k".into(),
            reason: Reason::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(1500),
        };
        assert_eq!(
            serde_json::to_string(&rejected).unwrap(),
            r#"{"type":"rejected","key":"k","reason":"rate_limited","message":"slow down","retry_after_ms":1500}"#
        );
        let hello: Hello =
            serde_json::from_str(r#"{"type":"hello","broadcast":"demo/live"}"#).unwrap();
        assert_eq!(hello.token, None);
        assert!(serde_json::from_str::<Hello>(r#"{"type":"chat","broadcast":"x"}"#).is_err());
    }
}
