//! Email through an SMTP server that requires a login: the channel's user and password reach the
//! server (a python3-aiosmtpd sink that refuses mail without them), the message arrives; with a
//! wrong password the send fails with the server's answer, and nothing arrives.

mod common;

use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use rewind_site::db::alerts::{Alert, Notice};
use rewind_site::db::channels::{Channel, Delivery, Due};

fn due(port: u16, user: &str, password: &str) -> Due {
    let alert = Alert {
        id: 7,
        kind: "target_down".into(),
        subject: "t1".into(),
        severity: "critical".into(),
        state: "firing".into(),
        summary: "target t1 does not answer".into(),
        fired_ms: 1,
        resolved_ms: 0,
        acked_by: String::new(),
        acked_ms: 0,
    };
    let notice = Notice {
        transition: "fired".into(),
        alert,
        site: "test".into(),
    };
    Due {
        delivery: Delivery {
            id: 1,
            alert_id: 7,
            transition: "fired".into(),
            channel: "mail".into(),
            state: "pending".into(),
            attempts: 0,
            last_error: String::new(),
            next_ms: 0,
            updated_ms: 0,
        },
        payload: serde_json::to_string(&notice).unwrap(),
        channel: Channel {
            name: "mail".into(),
            kind: "email".into(),
            url: format!("smtp://127.0.0.1:{port}"),
            signed: true,
            mail_from: "rewind@site.example".into(),
            mail_to: "ops@example.com".into(),
            smtp_user: user.into(),
            created_ms: 0,
        },
        secret: password.into(),
    }
}

#[test]
fn the_login_reaches_the_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sink) = SmtpSink::start_with_login(dir.path(), "rewind", "correct horse") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t0 = Instant::now();
    // Wrong password: refused by the server, said so, nothing delivered.
    let e = rt
        .block_on(rewind_site::notify::email::send(&due(
            sink.port, "rewind", "wrong",
        )))
        .unwrap_err();
    // (aiosmtpd 1.4 answers nothing after a refused login: the attempt's own bound ends it.)
    assert!(format!("{e:#}").contains("sending mail through"), "{e:#}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(sink.messages().is_empty());
    eprintln!("wrong password refused after {:?}", t0.elapsed());
    // No login at all: the server wants one.
    assert!(rt
        .block_on(rewind_site::notify::email::send(&due(sink.port, "", "")))
        .is_err());
    eprintln!("no login refused after {:?}", t0.elapsed());
    // The right one: delivered.
    rt.block_on(rewind_site::notify::email::send(&due(
        sink.port,
        "rewind",
        "correct horse",
    )))
    .unwrap_or_else(|e| panic!("{e:#}\n{}", sink.log_text()));
    let t0 = Instant::now();
    while sink.messages().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}",
            sink.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = &sink.messages()[0];
    assert!(m.contains("target t1 does not answer"), "{m}");
    let log = sink.log_text();
    assert!(
        log.contains("auth") && log.contains("refused") && log.contains("ok"),
        "{log}"
    );
}
