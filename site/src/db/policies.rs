//! Named, versioned policies and their assignments to a group or to a label.
//!
//! A selector is `group:NAME` or `label:KEY=VALUE`; each selector has at most one policy
//! (assigning again replaces it). A group's policy is the one assigned to it by name, else the
//! one of its labels assigned last.

use std::collections::HashMap;

use rewind_formats::policy::Policy;
use serde::{Deserialize, Serialize};

use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// A policy assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: i64,
    pub policy: String,
    /// `group:NAME` or `label:KEY=VALUE`.
    pub selector: String,
}

impl Db {
    pub async fn create_policy(&self, p: &Policy) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO policies (name, version, body, updated_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&p.name)
        .bind(p.version as i64)
        .bind(serde_json::to_string(p).map_err(anyhow::Error::from)?)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            ApiError::from_insert(
                e,
                format!(
                    "policy {} exists (change it with `rewind-site policy update`)",
                    p.name
                ),
            )
        })?;
        Ok(())
    }

    /// Replace a policy if its stored version is still `p.version - 1` (two updates at once:
    /// the second is refused rather than lost).
    pub async fn update_policy(&self, p: &Policy) -> Result<(), ApiError> {
        let n = sqlx::query(
            "UPDATE policies SET version = $2, body = $3, updated_ms = $4 \
             WHERE name = $1 AND version = $5",
        )
        .bind(&p.name)
        .bind(p.version as i64)
        .bind(serde_json::to_string(p).map_err(anyhow::Error::from)?)
        .bind(now_ms())
        .bind(p.version as i64 - 1)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(ApiError::conflict(format!(
                "policy {} changed meanwhile (or was removed): read it again and retry",
                p.name
            )));
        }
        Ok(())
    }

    pub async fn policy(&self, name: &str) -> Result<Policy, ApiError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT body FROM policies WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some((body,)) => Ok(parse_body(name, &body)?),
            None => Err(ApiError::not_found(format!(
                "no policy {name} (see `rewind-site policy list`)"
            ))),
        }
    }

    pub async fn policies(&self) -> Result<Vec<Policy>, ApiError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, body FROM policies ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|(n, b)| parse_body(n, b)).collect()
    }

    /// Assign `policy` to `selector`, replacing what it had.
    pub async fn assign(&self, policy: &str, selector: &str) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM assignments WHERE selector = $1")
            .bind(selector)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO assignments (policy, selector, created_ms) VALUES ($1, $2, $3)")
            .bind(policy)
            .bind(selector)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the assignment to `selector`; how many there were (0 or 1).
    pub async fn unassign(&self, selector: &str) -> Result<u64, ApiError> {
        let r = sqlx::query("DELETE FROM assignments WHERE selector = $1")
            .bind(selector)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn assignments(&self) -> Result<Vec<Assignment>, ApiError> {
        let rows = sqlx::query("SELECT id, policy, selector FROM assignments ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Assignment {
                    id: int(r, "id")?,
                    policy: text(r, "policy")?,
                    selector: text(r, "selector")?,
                })
            })
            .collect()
    }

    pub async fn set_label(&self, group: &str, key: &str, value: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO group_labels (group_name, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (group_name, key) DO UPDATE SET value = excluded.value",
        )
        .bind(group)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_label(&self, group: &str, key: &str) -> Result<(), ApiError> {
        let n = sqlx::query("DELETE FROM group_labels WHERE group_name = $1 AND key = $2")
            .bind(group)
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!(
                "group {group} has no label {key}"
            )));
        }
        Ok(())
    }

    /// Every group's labels.
    pub async fn labels(&self) -> Result<HashMap<String, Vec<(String, String)>>, ApiError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT group_name, key, value FROM group_labels ORDER BY group_name, key",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (g, k, v) in rows {
            out.entry(g).or_default().push((k, v));
        }
        Ok(out)
    }

    /// Record what the targets said to a round of policy pushes, and an event for each push
    /// they took, in one transaction: a round of a thousand groups is one commit, not two
    /// thousand.
    pub async fn record_pushes(&self, outcomes: &[PushOutcome]) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        let at = now_ms();
        for o in outcomes {
            sqlx::query(
                "INSERT INTO pushes (group_name, target, policy, version, error, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_name) DO UPDATE SET \
                 target = excluded.target, policy = excluded.policy, version = excluded.version, \
                 error = excluded.error, at_ms = excluded.at_ms",
            )
            .bind(&o.group)
            .bind(&o.target)
            .bind(&o.policy)
            .bind(o.version as i64)
            .bind(&o.error)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if o.error.is_empty() {
                sqlx::query(
                    "INSERT INTO events (at_ms, kind, subject, detail) VALUES ($1, $2, $3, $4)",
                )
                .bind(at)
                .bind("policy.applied")
                .bind(&o.group)
                .bind(format!(
                    "{} version {} on {}",
                    o.policy, o.version, o.target
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every push: group -> (target, policy, version, error, at_ms).
    pub async fn pushes(
        &self,
    ) -> Result<HashMap<String, (String, String, i64, String, i64)>, ApiError> {
        let rows: Vec<(String, String, String, i64, String, i64)> =
            sqlx::query_as("SELECT group_name, target, policy, version, error, at_ms FROM pushes")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(g, t, p, v, e, at)| (g, (t, p, v, e, at)))
            .collect())
    }
}

/// What one policy push came to.
pub struct PushOutcome {
    pub group: String,
    pub target: String,
    pub policy: String,
    pub version: u64,
    /// Empty: the target took it.
    pub error: String,
}

fn parse_body(name: &str, body: &str) -> Result<Policy, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::internal(format!("stored policy {name} does not parse: {e}")))
}

/// The policy (name) that applies to a group with these labels, from the assignments (in the
/// order they were made).
pub fn effective<'a>(
    group: &str,
    labels: &[(String, String)],
    assignments: &'a [Assignment],
) -> Option<&'a str> {
    let by_group = format!("group:{group}");
    if let Some(a) = assignments.iter().find(|a| a.selector == by_group) {
        return Some(&a.policy);
    }
    assignments
        .iter()
        .rev()
        .find(|a| {
            a.selector
                .strip_prefix("label:")
                .and_then(|kv| kv.split_once('='))
                .is_some_and(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|a| a.policy.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: i64, policy: &str, selector: &str) -> Assignment {
        Assignment {
            id,
            policy: policy.into(),
            selector: selector.into(),
        }
    }

    #[test]
    fn group_assignment_wins_then_newest_label() {
        let l = vec![
            ("tier".to_string(), "gold".to_string()),
            ("env".into(), "prod".into()),
        ];
        let asg = vec![a(1, "p1", "label:tier=gold"), a(2, "p2", "label:env=prod")];
        assert_eq!(effective("g", &l, &asg), Some("p2"));
        let mut with_group = asg.clone();
        with_group.push(a(3, "p3", "group:g"));
        assert_eq!(effective("g", &l, &with_group), Some("p3"));
        assert_eq!(effective("h", &[], &with_group), None);
        assert_eq!(
            effective("h", &[("tier".into(), "silver".into())], &asg),
            None
        );
    }
}
