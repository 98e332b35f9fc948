//! Fencing: a group failed over refuses its old source for good. The generation in the manifest
//! is the fence; this is what the store says when something arrives at an older one.

/// A request or a chunk from an older generation than the group's: its source was fenced.
///
/// The text is what the agent is told (a HELLO refusal and the end of a fenced session say the
/// same). The server sends it with its own wire code, `ErrorCode::Fenced`; the text still
/// carries the word "fenced" for agents from before that code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", fenced_message(.group, .reason.as_deref(), *.agent_generation, *.group_generation))]
pub(crate) struct Fenced {
    pub(crate) group: String,
    /// Why the group was fenced (the operator's words), when the manifest records it.
    pub(crate) reason: Option<String>,
    /// The generation the request came with.
    pub(crate) agent_generation: u64,
    /// The group's generation now.
    pub(crate) group_generation: u64,
}

/// A reason (typed by an operator) is cut to [`MAX_REASON_LEN`] bytes here, so that the whole
/// message, with the word agents look for, fits an ERROR frame's text.
fn fenced_message(group: &str, reason: Option<&str>, agent_gen: u64, group_gen: u64) -> String {
    match reason {
        Some(r) => format!(
            "group {group} was failed over, this agent (generation {agent_gen}) is fenced; \
             the group is at generation {group_gen} ({})",
            cut_reason(r)
        ),
        None => format!(
            "group {group} is at generation {group_gen}; this agent (generation {agent_gen}) is \
             stale (fenced)"
        ),
    }
}

/// The most bytes of a fence reason that a fenced message quotes.
pub(crate) const MAX_REASON_LEN: usize = 1024;

fn cut_reason(r: &str) -> std::borrow::Cow<'_, str> {
    if r.len() <= MAX_REASON_LEN {
        return r.into();
    }
    let mut end = MAX_REASON_LEN;
    while !r.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &r[..end], r.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_but_the_message_still_says_fenced() {
        let f = Fenced {
            group: "g".into(),
            reason: Some("é".repeat(MAX_REASON_LEN)),
            agent_generation: 1,
            group_generation: 2,
        };
        let m = f.to_string();
        assert!(m.contains("fenced") && m.contains("bytes)"), "{m}");
        assert!(m.len() < 2 * MAX_REASON_LEN, "{}", m.len());
        let f = Fenced { reason: None, ..f };
        assert!(f.to_string().contains("stale (fenced)"));
    }
}
