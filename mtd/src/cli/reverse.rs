//! `rewind reverse GROUP --to HOST:PORT` (or `--stop`): protect a committed failover's live
//! disks and replicate them to another site.

use anyhow::Result;

use super::failover::describe_result;
use super::job;
use super::table::json_text;
use crate::api::failover::ReverseRequest;
use crate::client::Client;

pub fn start(c: &Client, json: bool, group: &str, req: &ReverseRequest) -> Result<String> {
    let r = job::start(c, &format!("/v1/groups/{group}/reverse"), req, json)?;
    print(json, &r)
}

pub fn stop(c: &Client, json: bool, group: &str) -> Result<String> {
    let job: crate::api::jobs::JobInfo = c.delete(&format!("/v1/groups/{group}/reverse"))?;
    let r = job::follow(c, job.id, json)?;
    print(json, &r)
}

fn print(json: bool, r: &Option<crate::api::jobs::JobResult>) -> Result<String> {
    if json {
        json_text(r)
    } else {
        describe_result(r)
    }
}
