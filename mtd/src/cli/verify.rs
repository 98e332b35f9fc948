//! `rewind verify GROUP [--point P] [--repair] [--deadline-secs N]`: compare the source's disks
//! with the replica while the workload runs (a job; see `crate::verify`). Prints what differs;
//! without `--json`, exits 1 when something differs and was not repaired, so scripts can alert.

use anyhow::{bail, Result};

use super::job;
use super::table::json_text;
use crate::api::verify::{VerifyRequest, VerifyResult};
use crate::client::Client;

pub fn run(
    c: &Client,
    json: bool,
    group: &str,
    point: Option<&str>,
    repair: bool,
    deadline_secs: Option<u64>,
) -> Result<String> {
    let req = VerifyRequest {
        point: point.map(str::to_string),
        repair,
        deadline_secs,
    };
    let result = job::start(c, &format!("/v1/groups/{group}/verify"), &req, json)?;
    let Some(v) = result.and_then(|r| r.verify) else {
        bail!("the verify job of group {group} ended without a result");
    };
    if json {
        return json_text(&v);
    }
    let text = text(group, &v);
    if !v.ranges.is_empty() && !v.repaired {
        bail!("{text}");
    }
    Ok(text)
}

fn text(group: &str, v: &VerifyResult) -> String {
    let mut s = format!(
        "group {group}: compared {} of {} bytes; {} differing range(s), {} bytes{}\n",
        v.compared_bytes,
        v.total_bytes,
        v.ranges.len(),
        v.mismatched_bytes,
        if v.repaired { " (resent)" } else { "" }
    );
    if v.recompared_bytes > 0 {
        s += &format!(
            "  {} bytes were written during the verify and compared at a later point\n",
            v.recompared_bytes
        );
    }
    if v.not_compared_bytes > 0 {
        s += &format!(
            "  {} bytes kept being written until the deadline: not compared\n",
            v.not_compared_bytes
        );
    }
    for r in &v.ranges {
        s += &format!(
            "  {}/{} offset {} length {} differs (compared at seq {}, {} ms)\n",
            group, r.disk, r.offset, r.len, r.seq, r.time_ms
        );
    }
    s
}
