//! fio jobs, the baseline of every write and read bench, and the figures read from their JSON.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::tools;

/// Runs `fio --output-format=json ARGS` and returns its JSON report.
pub fn run(args: &[String], what: &str) -> Result<Value> {
    let out = tools::stdout_of(
        Command::new("fio").arg("--output-format=json").args(args),
        what,
    )?;
    // fio may print notes before the JSON document.
    let json = out.find('{').map_or("", |i| &out[i..]);
    serde_json::from_str(json).with_context(|| format!("{what}: reading fio's JSON report"))
}

/// `jobs[0].DIR.FIELD` of a fio report (DIR: `read` or `write`).
pub fn field(report: &Value, dir: &str, field: &str) -> Result<f64> {
    report["jobs"][0][dir][field]
        .as_f64()
        .with_context(|| format!("fio's report has no jobs[0].{dir}.{field}"))
}

/// `jobs[0].DIR.bw_bytes / 1e6`: MB/s.
pub fn mbs(report: &Value, dir: &str) -> Result<f64> {
    Ok(field(report, dir, "bw_bytes")? / 1e6)
}

/// The apply bench's baseline, one run: sequential 1 MiB QD32 writes of `size` bytes, then random
/// 4 KiB QD64 writes over the same (now fully written) file, capped at `rand_seconds`.
/// Returns (sequential MB/s, random MB/s, random IOPS).
pub fn apply_baseline(file: &Path, size: u64, rand_seconds: u64) -> Result<(f64, f64, f64)> {
    let _ = std::fs::remove_file(file);
    let common = [
        format!("--filename={}", file.display()),
        "--ioengine=io_uring".to_string(),
        "--direct=1".to_string(),
        format!("--size={size}"),
    ];
    let mut seq: Vec<String> = vec!["--name=seq1m".into()];
    seq.extend(common.iter().cloned());
    seq.extend(["--rw=write", "--bs=1M", "--iodepth=32", "--end_fsync=1"].map(String::from));
    let seq = run(&seq, "fio")?;
    let mut rand: Vec<String> = vec!["--name=rand4k".into()];
    rand.extend(common.iter().cloned());
    rand.extend(["--rw=randwrite", "--bs=4k", "--iodepth=64"].map(String::from));
    rand.extend([
        format!("--runtime={rand_seconds}"),
        "--randrepeat=0".into(),
        "--end_fsync=1".into(),
    ]);
    let rand = run(&rand, "fio")?;
    let _ = std::fs::remove_file(file);
    Ok((
        mbs(&seq, "write")?,
        mbs(&rand, "write")?,
        field(&rand, "write", "iops")?,
    ))
}

/// Sequential 1 MiB QD16 direct reads of the first `size` bytes of a block device, MB/s.
pub fn read_mbs(dev: &str, size: u64) -> Result<f64> {
    let args = [
        "--name=seqread".to_string(),
        format!("--filename={dev}"),
        "--ioengine=io_uring".into(),
        "--direct=1".into(),
        "--rw=read".into(),
        "--bs=1M".into(),
        "--iodepth=16".into(),
        format!("--size={size}"),
        "--readonly".into(),
    ];
    mbs(&run(&args, &format!("fio read of {dev}"))?, "read")
}

/// Direct libaio writes for `seconds` to a device (seq: 1 MiB QD32; rand: 4 KiB QD64), MB/s.
pub fn write_mbs(dev: &str, rand: bool, seconds: u64, size: u64) -> Result<f64> {
    let job = if rand {
        ["--rw=randwrite", "--bs=4k", "--iodepth=64"]
    } else {
        ["--rw=write", "--bs=1M", "--iodepth=32"]
    };
    let mut args = vec![
        "--name=w".to_string(),
        format!("--filename={dev}"),
        "--ioengine=libaio".into(),
        "--direct=1".into(),
    ];
    args.extend(job.map(String::from));
    args.extend([
        "--time_based".into(),
        format!("--runtime={seconds}"),
        format!("--size={size}"),
    ]);
    mbs(&run(&args, &format!("fio on {dev}"))?, "write")
}

/// Random 4 KiB direct reads, QD64, for `seconds` over the first `size` bytes of a device: MB/s.
pub fn randread_mbs(dev: &str, seconds: u64, size: u64) -> Result<f64> {
    let args = [
        "--name=randread".to_string(),
        format!("--filename={dev}"),
        "--ioengine=libaio".into(),
        "--direct=1".into(),
        "--rw=randread".into(),
        "--bs=4k".into(),
        "--iodepth=64".into(),
        "--time_based".into(),
        format!("--runtime={seconds}"),
        format!("--size={size}"),
        "--readonly".into(),
    ];
    mbs(&run(&args, &format!("fio randread of {dev}"))?, "read")
}
