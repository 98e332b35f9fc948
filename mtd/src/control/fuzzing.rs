//! Fuzz entry point for the control API's request bodies, shared by `mtd/fuzz` (target
//! `control_body`) and the corpus replay test (`mtd/tests/fuzz_corpus.rs`).
//!
//! The first byte picks a body type (every `Json<T>` the routes take), the rest is the JSON.
//! What deserializes must serialize and deserialize again to the same JSON, and its text fields
//! go through the parsers the handlers apply to them (export names, points, durations, boot
//! command templates, recovery plan files, plan modes). Nothing is executed: no route runs, so
//! a fuzzed boot command or mount never reaches a shell or the kernel.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::attachments::{AttachRequest, DetachRequest, MountRequest, UmountRequest};
use crate::api::drain::{DrainRequest, FenceRequest};
use crate::api::failover::{AdoptRequest, ConfigureRequest, PointRequest, ReverseRequest};
use crate::api::groups::RetentionRequest;
use crate::api::overlays::OverlayCreate;
use crate::api::plans::RunRequest;
use crate::store::points::PointSpec;
use crate::views::exports::ExportName;

/// Body types, in selector order (`data[0] % BODIES`).
pub const BODIES: &[&str] = &[
    "retention",
    "drain",
    "fence",
    "overlay_create",
    "attach",
    "detach",
    "mount",
    "umount",
    "failover_point",
    "failover_configure",
    "reverse",
    "adopt",
    "plan_run",
];

/// Deserialize; if that works, the value must survive a JSON round trip unchanged.
fn roundtrip<T: DeserializeOwned + Serialize>(json: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(json).ok()?;
    let once = serde_json::to_value(&v).expect("a parsed body serializes");
    let again: T = serde_json::from_value(once.clone()).expect("a serialized body parses");
    assert_eq!(
        serde_json::to_value(&again).expect("serializes"),
        once,
        "JSON round trip changed the body"
    );
    Some(v)
}

fn point(s: &str) {
    let _ = PointSpec::parse(s);
}

fn export(s: &str) {
    if let Ok(n) = ExportName::parse(s) {
        // What parses prints back to something that parses.
        let text = n.to_string();
        assert!(
            ExportName::parse(&text).is_ok(),
            "{s:?} -> {text:?} does not parse"
        );
    }
}

fn duration(s: &str) {
    if let Ok(d) = humantime::parse_duration(s) {
        let _ = humantime::format_duration(d).to_string();
        let _ = d.as_millis();
    }
}

/// Fuzz target `control_body` (see the module docs).
pub fn body(data: &[u8]) {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    match BODIES[sel as usize % BODIES.len()] {
        "retention" => {
            if let Some(r) = roundtrip::<RetentionRequest>(json) {
                duration(&r.retention);
            }
        }
        "drain" => {
            if let Some(r) = roundtrip::<DrainRequest>(json) {
                let _ = rewind_formats::validate_name(&r.tag);
            }
        }
        "fence" => {
            let _ = roundtrip::<FenceRequest>(json);
        }
        "overlay_create" => {
            if let Some(r) = roundtrip::<OverlayCreate>(json) {
                let _ = rewind_formats::validate_name(&r.name);
                export(&r.export);
            }
        }
        "attach" => {
            if let Some(r) = roundtrip::<AttachRequest>(json) {
                export(&r.export);
            }
        }
        "detach" => {
            let _ = roundtrip::<DetachRequest>(json);
        }
        "mount" => {
            if let Some(r) = roundtrip::<MountRequest>(json) {
                export(&r.export);
            }
        }
        "umount" => {
            let _ = roundtrip::<UmountRequest>(json);
        }
        "failover_point" => {
            if let Some(PointRequest { point: Some(p) }) = roundtrip::<PointRequest>(json) {
                point(&p);
            }
        }
        "failover_configure" => {
            if let Some(ConfigureRequest { boot: Some(b) }) = roundtrip::<ConfigureRequest>(json) {
                let _ = crate::plan::BootCommand::parse(&b);
            }
        }
        "reverse" => {
            let _ = roundtrip::<ReverseRequest>(json);
        }
        "adopt" => {
            if let Some(r) = roundtrip::<AdoptRequest>(json) {
                if let Some(t) = &r.retention {
                    duration(t);
                }
            }
        }
        "plan_run" => {
            if let Some(r) = roundtrip::<RunRequest>(json) {
                let _ = r.mode.parse::<crate::plan::Mode>();
                if let Some(p) = &r.point {
                    point(p);
                }
                let _ = crate::plan::Plan::parse(&r.path, &r.text);
            }
        }
        other => unreachable!("no body type {other}"),
    }
}
