//! NBD access control and limits, attacked the way a hostile local user or client would: a
//! non-root user on the unix socket, a member of the access group trying to write, TLS clients
//! with and without grants (qemu-img, nbdinfo, nbdcopy, nbdsh), plain options before STARTTLS,
//! plain TCP at start, a flood of connections, a silent client, a reader holding a point forever,
//! an accept loop out of descriptors, and a live disk turning read-only under an open writer.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nbd_pki::{nbds, Pki};
use common::*;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("{test}: skipped (needs root: runuser, chown, the access group)");
    }
    root
}

/// A libnbd or qemu tool, Debian's (nbdsh needs the system python's nbd module).
fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("/usr/bin:{path}"));
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// 1 MiB written to `g/sda` (4 MiB disk), tagged every 64 records.
fn replicate(d: &Mtd) -> Workload {
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:4MiB".into()],
        seed: 5,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(wl.run_cmd(&d.target(), "1MiB").args(["--tag-every", "64"]));
    wl
}

/// The work dir reachable by everyone (tempdir makes it 0700), so that a refusal comes from the
/// socket and the daemon, not from the path.
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
}

fn nbd_sock_mode(d: &Mtd) -> u32 {
    std::fs::metadata(&d.nbd_sock).unwrap().permissions().mode() & 0o777
}

fn read_export(uri: &str, out: &Path) -> Output {
    run(tool("nbdcopy").arg(uri).arg(out))
}

/// Count the log lines holding `what`.
fn count(d: &Mtd, what: &str) -> usize {
    d.log_text().lines().filter(|l| l.contains(what)).count()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hand-written client, for what the real ones will not do.
struct Raw<S: Read + Write>(S);

impl<S: Read + Write> Raw<S> {
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.read_exact(&mut b).unwrap();
        u32::from_be_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.read_exact(&mut b).unwrap();
        u64::from_be_bytes(b)
    }
    /// Read the greeting and answer it (fixed newstyle, no zeroes).
    fn greet(&mut self) {
        assert_eq!(self.u64(), NBDMAGIC);
        assert_eq!(self.u64(), IHAVEOPT);
        let mut f = [0u8; 2];
        self.0.read_exact(&mut f).unwrap();
        self.0.write_all(&3u32.to_be_bytes()).unwrap();
    }
    fn opt(&mut self, opt: u32, data: &[u8]) {
        let mut m = Vec::new();
        m.extend_from_slice(&IHAVEOPT.to_be_bytes());
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.0.write_all(&m).unwrap();
    }
    fn opt_reply(&mut self, opt: u32) -> (u32, Vec<u8>) {
        assert_eq!(self.u64(), REPLY_MAGIC);
        assert_eq!(self.u32(), opt);
        let kind = self.u32();
        let len = self.u32() as usize;
        let mut b = vec![0u8; len];
        self.0.read_exact(&mut b).unwrap();
        (kind, b)
    }
    /// Whether the server closed the connection (EOF or reset) rather than sending a byte.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0) | Err(_))
    }
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

fn unix_raw(sock: &Path) -> Raw<std::os::unix::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    Raw(s)
}

#[test]
fn unix_socket_refuses_strangers_and_members_only_read() {
    if !is_root("unix_socket_refuses_strangers_and_members_only_read") {
        return;
    }
    let work = tempdir();
    open_up(work.path());
    let d = Mtd::start_engine(work.path(), "sync", &["--nbd-listen", "none"]);
    replicate(&d);
    assert_ok(
        &run(d.rewind_cmd().args(["overlay", "create", "o1", "g/sda"])),
        "overlay create",
    );
    assert_eq!(nbd_sock_mode(&d), 0o660);
    assert!(
        !d.ready_lines()
            .iter()
            .any(|l| l.starts_with("nbd ") && !l.contains("unix:")),
        "TCP must be off by default: {:?}",
        d.ready_lines()
    );

    // A stranger: the socket's mode stops it.
    let list = format!("nbd+unix:///?socket={}", d.nbd_sock.display());
    let out = run(tool("runuser").args(["-u", "nobody", "--", "nbdinfo", "--list", &list]));
    assert!(
        !out.status.success(),
        "nobody listed exports: {}",
        text(&out)
    );
    assert!(!text(&out).contains("g/sda"), "{}", text(&out));

    // Even with the socket opened up (a bad umask, a passed descriptor), the peer check does.
    std::fs::set_permissions(&d.nbd_sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    for _ in 0..20 {
        let out = run(tool("runuser").args(["-u", "nobody", "--", "nbdinfo", "--list", &list]));
        assert!(
            !out.status.success(),
            "nobody listed exports: {}",
            text(&out)
        );
        assert!(!text(&out).contains("g/sda"), "{}", text(&out));
    }
    let refusals = count(&d, "refused a connection on the unix socket");
    assert!(
        (1..=3).contains(&refusals),
        "one rate-limited log line for 21 refusals, got {refusals}:\n{}",
        d.log_tail(30)
    );
    assert!(d.log_text().contains("uid 65534"), "{}", d.log_tail(30));
    std::fs::set_permissions(&d.nbd_sock, std::fs::Permissions::from_mode(0o660)).unwrap();

    // A member of the access group reads every export...
    let member = |args: &[&str]| {
        let mut c = tool("runuser");
        c.args(["-u", "nobody", "-g", "rewind", "--"]).args(args);
        run(&mut c)
    };
    let out = member(&["nbdinfo", "--list", &list]);
    assert_ok(&out, "nbdinfo --list as a member");
    assert!(text(&out).contains("g/sda"), "{}", text(&out));
    let copy = work.path().join("member.img");
    std::fs::File::create(&copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = member(&[
        "nbdcopy",
        &d.nbd_uri("g/sda@tag:t128"),
        copy.to_str().unwrap(),
    ]);
    assert_ok(&out, "nbdcopy as a member");
    let want = work.path().join("want.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "tag:t128", &want), "dump");
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&want).unwrap());

    // ... but writes none: the overlay opens read-only, a write fails, nothing changes.
    let before = work.path().join("before.img");
    assert_ok(
        &read_export(&d.nbd_uri("g/sda@overlay:o1"), &before),
        "read o1",
    );
    let uri = d.nbd_uri("g/sda@overlay:o1");
    let out = member(&["nbdinfo", "--json", &uri]);
    assert_ok(&out, "nbdinfo o1 as a member");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["exports"][0]["is_read_only"], true, "{info}");
    let out = member(&["nbdsh", "-u", &uri, "-c", "h.pwrite(b'\\xee' * 4096, 0)"]);
    assert!(!out.status.success(), "member wrote o1: {}", text(&out));
    let after = work.path().join("after.img");
    assert_ok(
        &read_export(&d.nbd_uri("g/sda@overlay:o1"), &after),
        "read o1",
    );
    assert!(std::fs::read(&before).unwrap() == std::fs::read(&after).unwrap());

    // Root may write it (the check above could not pass by accident).
    let out = run(tool("nbdsh").args(["-u", &uri, "-c", "h.pwrite(b'\\xee' * 4096, 0)"]));
    assert_ok(&out, "root writes o1");
    assert_ok(&read_export(&uri, &after), "read o1");
    assert_eq!(&std::fs::read(&after).unwrap()[..4096], &[0xee; 4096][..]);
}

#[test]
fn tls_clients_get_what_the_clients_file_grants() {
    if !is_root("tls_clients_get_what_the_clients_file_grants") {
        return;
    }
    let work = tempdir();
    let pki = Pki::new(work.path());
    let clients = work.path().join("nbd-clients.toml");
    std::fs::write(
        &clients,
        "[clients.reader]\nread = [\"g\"]\n\n[clients.writer]\nwrite = [\"g\"]\n",
    )
    .unwrap();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--nbd-listen",
            "127.0.0.1:0",
            "--nbd-tls-dir",
            pki.ca.to_str().unwrap(),
            "--nbd-clients",
            clients.to_str().unwrap(),
        ],
    );
    replicate(&d);
    assert_ok(
        &run(d.rewind_cmd().args(["overlay", "create", "o1", "g/sda"])),
        "overlay create",
    );
    assert_ok(
        &run(d.rewind_cmd().args(["overlay", "create", "o2", "g/sda"])),
        "overlay create",
    );
    let addr = d.nbd_tcp();
    let (reader, writer, stranger) = (
        pki.client("reader"),
        pki.client("writer"),
        pki.client("stranger"),
    );
    let want = work.path().join("want.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "latest", &want), "dump");

    // Without TLS: nothing. Before STARTTLS, every option is TLS_REQD; an export name hangs up.
    let out = run(tool("nbdinfo").args(["--list", &format!("nbd://{addr}/")]));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("g/sda"), "{}", text(&out));
    let tcp = || {
        let s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = Raw(s);
        r.greet();
        r
    };
    let mut r = tcp();
    r.opt(OPT_LIST, &[]);
    assert_eq!(r.opt_reply(OPT_LIST).0, REP_ERR_TLS_REQD);
    r.opt(OPT_GO, &go_data("g/sda"));
    assert_eq!(r.opt_reply(OPT_GO).0, REP_ERR_TLS_REQD);
    r.opt(OPT_STARTTLS, &[]);
    assert_eq!(r.opt_reply(OPT_STARTTLS).0, REP_ACK);
    let mut r = tcp();
    r.opt(1, b"g/sda"); // NBD_OPT_EXPORT_NAME
    assert!(r.closed());

    // A certificate the file does not name sees nothing, and is told exactly what a missing
    // group gets.
    let out = run(tool("nbdinfo").args(["--list", &nbds(&addr, "", &stranger)]));
    assert!(!text(&out).contains("g/sda"), "{}", text(&out));
    let denied = run(tool("nbdinfo").arg(nbds(&addr, "g/sda", &stranger)));
    assert!(!denied.status.success(), "{}", text(&denied));
    let missing = run(tool("nbdinfo").arg(nbds(&addr, "zz/sda", &stranger)));
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&denied.stderr)
            .replace("g/sda", "X")
            .replace("group g", "group X"),
        String::from_utf8_lossy(&missing.stderr)
            .replace("zz/sda", "X")
            .replace("group zz", "group X"),
        "a refused group must look like a missing one"
    );

    // The reader: lists and reads with nbdinfo, nbdcopy and qemu-img over TLS.
    let out = run(tool("nbdinfo").args(["--list", &nbds(&addr, "", &reader)]));
    assert_ok(&out, "nbdinfo --list as reader");
    assert!(text(&out).contains("g/sda"), "{}", text(&out));
    let copy = work.path().join("reader.img");
    assert_ok(
        &read_export(&nbds(&addr, "g/sda", &reader), &copy),
        "nbdcopy as reader",
    );
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&want).unwrap());
    let (host, port) = addr.rsplit_once(':').unwrap();
    let qemu_compare = |certs: &Path, export: &str, img: &Path| {
        run(tool("qemu-img")
            .arg("compare")
            .arg("--object")
            .arg(format!(
                "tls-creds-x509,id=tls0,dir={},endpoint=client",
                certs.display()
            ))
            .arg("--image-opts")
            .arg(format!(
                "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0"
            ))
            .arg(format!("driver=file,filename={}", img.display())))
    };
    assert_ok(
        &qemu_compare(&reader, "g/sda", &want),
        "qemu-img compare as reader",
    );
    let out = qemu_compare(&stranger, "g/sda", &want);
    assert!(
        !out.status.success(),
        "stranger read g/sda with qemu: {}",
        text(&out)
    );

    // The reader cannot write an overlay: it opens read-only and a write changes nothing.
    let o1 = |certs: &Path| nbds(&addr, "g/sda@overlay:o1", certs);
    let before = work.path().join("o1-before.img");
    assert_ok(&read_export(&o1(&writer), &before), "read o1");
    let out = run(tool("nbdinfo").args(["--json", &o1(&reader)]));
    assert_ok(&out, "nbdinfo o1 as reader");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["exports"][0]["is_read_only"], true, "{info}");
    let write = |uri: &str| {
        run(tool("nbdsh").args([
            "-c",
            "h.set_uri_allow_local_file(True)",
            "-c",
            &format!("h.connect_uri({uri:?})"),
            "-c",
            "h.pwrite(b'\\xab' * 4096, 8192)",
        ]))
    };
    let out = write(&o1(&reader));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("read-only") || text(&out).contains("not permitted"),
        "the write must fail for want of the grant: {}",
        text(&out)
    );
    // @test likewise. The test failover that makes it hands its boot command the unix socket
    // (root needs no certificate there), not the TLS port.
    let out = run(d.rewind_cmd().args(["--json", "failover", "test", "g"]));
    assert_ok(&out, "failover test");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let boot_uri = r["test"]["disks"][0]["nbd_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        boot_uri.starts_with("nbd+unix:///g/sda@test?socket="),
        "{r}"
    );
    let via_boot = work.path().join("via-boot-uri.img");
    assert_ok(&read_export(&boot_uri, &via_boot), "nbdcopy the boot URI");
    assert!(std::fs::read(&via_boot).unwrap() == std::fs::read(&want).unwrap());
    let out = run(tool("nbdinfo").args(["--json", &nbds(&addr, "g/sda@test", &reader)]));
    assert_ok(&out, "nbdinfo @test as reader");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["exports"][0]["is_read_only"], true, "{info}");
    assert!(!write(&nbds(&addr, "g/sda@test", &reader)).status.success());
    let out = run(tool("nbdinfo").args(["--json", &nbds(&addr, "g/sda@test", &writer)]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["exports"][0]["is_read_only"], false, "{info}");
    let after = work.path().join("o1-after.img");
    assert_ok(&read_export(&o1(&writer), &after), "read o1");
    assert!(std::fs::read(&before).unwrap() == std::fs::read(&after).unwrap());

    // The writer can (so the refusal above is the grant's doing).
    assert_ok(&write(&o1(&writer)), "writer writes o1");
    assert_ok(&read_export(&o1(&writer), &after), "read o1");
    assert_eq!(
        &std::fs::read(&after).unwrap()[8192..12288],
        &[0xab; 4096][..]
    );
    assert!(d.log_text().contains("cert reader"), "{}", d.log_tail(20));
}

#[test]
fn plain_tcp_is_refused_at_start() {
    let work = tempdir();
    let pki = Pki::new(work.path());
    let serve = |args: &[&str]| {
        let dir = tempdir();
        run(Command::new(bin("rewind-mtd"))
            .args(["serve", "--nbd-unix", "none", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--unix")
            .arg(dir.path().join("a.sock"))
            .arg("--control")
            .arg(dir.path().join("c.sock"))
            .args(args))
    };
    let out = serve(&["--nbd-listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("refusing plain TCP"), "{}", text(&out));
    let out = serve(&["--nbd-listen", "0.0.0.0:0", "--nbd-insecure"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a loopback address"),
        "{}",
        text(&out)
    );
    let ca = pki.ca.to_str().unwrap();
    let out = serve(&["--nbd-listen", "0.0.0.0:0", "--nbd-tls-dir", ca]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--nbd-clients"), "{}", text(&out));
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[clients.a]\nread = [\"g\"]\nwrite = [\"../etc\"]\n").unwrap();
    let out = serve(&[
        "--nbd-listen",
        "0.0.0.0:0",
        "--nbd-tls-dir",
        ca,
        "--nbd-clients",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{}:3:", bad.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn connection_cap_and_handshake_deadline() {
    if !is_root("connection_cap_and_handshake_deadline") {
        return;
    }
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--nbd-listen",
            "none",
            "--nbd-max-conns",
            "4",
            "--nbd-handshake-timeout",
            "2s",
            "--nbd-idle-timeout",
            "3s",
        ],
    );
    replicate(&d);
    assert_ok(
        &run(d.rewind_cmd().args(["overlay", "create", "o1", "g/sda"])),
        "overlay create",
    );
    // Four silent clients take every slot.
    let t0 = Instant::now();
    let mut silent: Vec<_> = (0..4)
        .map(|_| {
            let mut r = unix_raw(&d.nbd_sock);
            assert_eq!(r.u64(), NBDMAGIC);
            r
        })
        .collect();
    // The next ones are closed at once, without a greeting, and logged once.
    for _ in 0..20 {
        let mut r = unix_raw(&d.nbd_sock);
        assert!(r.closed(), "a connection over the cap was served");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "over-cap refusals must not wait"
    );
    let capped = count(&d, "too many connections");
    assert!(
        (1..=2).contains(&capped),
        "{capped} log lines:\n{}",
        d.log_tail(30)
    );
    // The silent ones are dropped at the handshake deadline.
    for r in &mut silent {
        let mut rest = [0u8; 10];
        r.0.read_exact(&mut rest).unwrap();
        assert!(r.closed(), "a silent client was kept");
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "closed after {waited:?}, want about 2 s"
    );
    // An idle read-only client is closed at the idle deadline; an idle writer (a VM's disk) is
    // not.
    let opened = |export: &str| {
        let mut r = unix_raw(&d.nbd_sock);
        r.greet();
        r.opt(OPT_GO, &go_data(export));
        loop {
            let (kind, _) = r.opt_reply(OPT_GO);
            assert!(kind < (1 << 31), "GO {export} refused: {kind:#x}");
            if kind == REP_ACK {
                break r;
            }
        }
    };
    let t0 = Instant::now();
    let mut reader = opened("g/sda");
    let mut writer = opened("g/sda@overlay:o1");
    assert!(reader.closed(), "an idle reader was kept");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(8),
        "idle reader closed after {waited:?}, want about 3 s"
    );
    writer
        .0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 1];
    let e = writer.0.read(&mut b).unwrap_err();
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::WouldBlock,
        "the idle writer was closed"
    );
    assert!(d.log_text().contains("idle past the deadline"));
    drop(writer);

    // A client that sends reads and never reads the replies holds what they fill until the
    // same deadline, then loses the connection (its replies, its buffers).
    let mut greedy = opened("g/sda");
    let mut m = Vec::new();
    for h in 0..200u64 {
        m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes()); // READ
        m.extend_from_slice(&h.to_be_bytes());
        m.extend_from_slice(&0u64.to_be_bytes());
        m.extend_from_slice(&(1u32 << 20).to_be_bytes());
    }
    greedy.0.write_all(&m).unwrap();
    wait_for("the stalled client closed", Duration::from_secs(15), || {
        d.log_text().contains("stopped reading replies")
    });
    // What was sent before the close drains, then EOF.
    greedy
        .0
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    greedy
        .0
        .read_to_end(&mut sink)
        .expect("the server closed the connection");
    assert!(sink.len() < 200 << 20, "every reply was sent");

    // Slots are back: a real client works.
    assert_ok(
        &run(tool("nbdinfo").arg(d.nbd_uri("g/sda"))),
        "nbdinfo after the cap",
    );
}

#[test]
fn a_point_held_past_its_maximum_age_gets_eio_and_retention_merges() {
    if !is_root("a_point_held_past_its_maximum_age_gets_eio_and_retention_merges") {
        return;
    }
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--nbd-listen",
            "none",
            "--retention",
            "2s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
            "--segment-size",
            "256KiB",
            "--nbd-max-point-age",
            "8s",
        ],
    );
    replicate(&d);
    // Hold t64 open, as an idle reader would.
    let mut r = unix_raw(&d.nbd_sock);
    r.greet();
    r.opt(OPT_GO, &go_data("g/sda@tag:t64"));
    loop {
        let (kind, _) = r.opt_reply(OPT_GO);
        if kind == REP_ACK {
            break;
        }
        assert!(kind < (1 << 31), "GO refused: {kind:#x}");
    }
    let opened = Instant::now();
    let read = |r: &mut Raw<std::os::unix::net::UnixStream>| -> u32 {
        let mut m = Vec::new();
        m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes()); // READ
        m.extend_from_slice(&7u64.to_be_bytes());
        m.extend_from_slice(&0u64.to_be_bytes());
        m.extend_from_slice(&4096u32.to_be_bytes());
        r.0.write_all(&m).unwrap();
        assert_eq!(r.u32(), 0x6744_6698);
        let error = r.u32();
        assert_eq!(r.u64(), 7);
        if error == 0 {
            let mut b = vec![0u8; 4096];
            r.0.read_exact(&mut b).unwrap();
        }
        error
    };
    assert_eq!(read(&mut r), 0);
    let horizon = || {
        group_json(&inspect(&d.data_dir), "g")["horizon_seq"]
            .as_u64()
            .unwrap()
    };
    // While held, retention (2 s) cannot pass the point.
    while opened.elapsed() < Duration::from_secs(6) {
        assert!(horizon() <= 64, "merged past a held point");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Past the maximum age: the reader gets EIO, one log line, and retention moves on.
    wait_for("point released", Duration::from_secs(20), || {
        d.log_text().contains("past --nbd-max-point-age")
    });
    assert_eq!(read(&mut r), 5, "EIO after the point was released");
    wait_for(
        "horizon past the released point",
        Duration::from_secs(30),
        || horizon() > 64,
    );
    assert_eq!(count(&d, "past --nbd-max-point-age"), 1);
}

#[test]
fn accept_loop_out_of_descriptors_does_not_flood_the_log() {
    if !is_root("accept_loop_out_of_descriptors_does_not_flood_the_log") {
        return;
    }
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &["--nbd-listen", "none"]);
    let pid = d.pid();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open_fds + 8;
    // Only the soft limit: it can be put back as it was (a hard limit can only be lowered).
    let original = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[4].to_string()
        })
        .unwrap();
    assert_ok(
        &run(Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={limit}:{original}"))),
        "prlimit",
    );
    let before = d.log_text().len();
    let clients: Vec<_> = (0..40)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&d.nbd_sock).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let log = d.log_text()[before..].to_string();
    let failures = log
        .lines()
        .filter(|l| l.contains("NBD accept failed"))
        .count();
    assert!(failures >= 1, "descriptors never ran out:\n{log}");
    assert!(
        failures <= 2,
        "{failures} accept-failure lines in 3 s:\n{log}"
    );
    assert!(log.len() < 64 << 10, "{} bytes of log in 3 s", log.len());
    // Descriptors back: the pending clients are served (the loop did not die).
    drop(clients);
    assert_ok(
        &run(Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={original}:{original}"))),
        "prlimit",
    );
    assert_ok(
        &run(tool("nbdinfo").args([
            "--list",
            &format!("nbd+unix:///?socket={}", d.nbd_sock.display()),
        ])),
        "nbdinfo after descriptors came back",
    );
}

/// A live disk opened writable over NBD before reverse replication starts stops taking writes
/// when it starts (`exports::set_nbd_read_only`, which `rewind reverse` calls), on the same
/// connection; and takes them again when it stops.
#[test]
fn live_disk_writers_already_connected_turn_read_only() {
    if !is_root("live_disk_writers_already_connected_turn_read_only") {
        return;
    }
    let work = tempdir();
    let mut d = Mtd::start_engine(work.path(), "sync", &["--nbd-listen", "none"]);
    replicate(&d);
    d.terminate();
    // The NBD server in this process, over the replicated store, with the live overlay.
    let store = rewind_mtd::store::Store::open(&d.data_dir, Default::default()).unwrap();
    let overlays = Arc::new(rewind_mtd::views::overlay::Overlays::load(store.clone()).unwrap());
    let live = rewind_mtd::views::exports::live_overlay_name("g", "sda");
    let o = overlays.create(&live, "g", "sda", "latest", false).unwrap();
    let exports = rewind_mtd::views::exports::Exports::new(store.clone(), overlays.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sock = work.path().join("live-nbd.sock");
    let opts = rewind_mtd::nbd::NbdOptions {
        unix: Some(sock.clone()),
        ..Default::default()
    };
    let access = rewind_mtd::access::LocalAccess::with_gid("rewind", 0);
    rt.block_on(rewind_mtd::nbd::start(exports, &opts, &access))
        .unwrap();
    // One nbdsh session: write, wait for the flip, write again, wait, write a third time.
    let flag = work.path().join("flipped");
    let back = work.path().join("back");
    let script = format!(
        r#"
import os, time
def wait(p):
    while not os.path.exists(p):
        time.sleep(0.05)
h.pwrite(b'\x11' * 4096, 0)
print("first ok", flush=True)
wait({flag:?})
try:
    h.pwrite(b'\x22' * 4096, 0)
    print("second ok", flush=True)
except nbd.Error as e:
    print("second refused", e.errno, flush=True)
wait({back:?})
h.pwrite(b'\x33' * 4096, 4096)
print("third ok", flush=True)
"#,
        flag = flag.display().to_string(),
        back = back.display().to_string()
    );
    let uri = format!("nbd+unix:///g/sda@live?socket={}", sock.display());
    let log = work.path().join("nbdsh.out");
    let mut child = Proc::spawn(
        tool("nbdsh")
            .args(["-u", &uri, "-c", &script])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::inherit()),
    );
    wait_for("first write", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("first ok")
    });
    rewind_mtd::views::exports::set_nbd_read_only(&o, true);
    std::fs::write(&flag, "").unwrap();
    wait_for("second write", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("second")
    });
    let mut buf = vec![0u8; 4096];
    o.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, vec![0x11; 4096], "a write went in after the flip");
    rewind_mtd::views::exports::set_nbd_read_only(&o, false);
    std::fs::write(&back, "").unwrap();
    assert!(child.wait_timeout(Duration::from_secs(30)).success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("second refused EPERM") || out.contains("second refused 1"),
        "{out}"
    );
    assert!(out.contains("third ok"), "{out}");
    o.read_at(&mut buf, 4096).unwrap();
    assert_eq!(buf, vec![0x33; 4096]);
    drop(rt);
}
