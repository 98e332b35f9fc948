//! A real headless browser driven over WebDriver: Chromium (Debian's `chromium` and
//! `chromium-driver`) or Firefox (Debian's `firefox-esr`, and Mozilla's `geckodriver` from
//! crates.io: Debian does not package it). The driver runs on a free port per test, killed by pid
//! on drop; a fresh profile lives in the test's scratch directory; the site's certificate from
//! the test's own temporary CA is accepted (`--ignore-certificate-errors`,
//! `acceptInsecureCerts`: that CA exists only for the test). Calls are synchronous (each one
//! blocks on a runtime the browser owns), like the rest of the site's tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// Which browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }

    /// The browser and its WebDriver, if both are installed.
    fn paths(self) -> Option<(PathBuf, PathBuf)> {
        match self {
            Kind::Chromium => Some((CHROMIUM.into(), CHROMEDRIVER.into())),
            Kind::Firefox => {
                // `cargo install geckodriver` puts it in cargo's bin directory, which may not
                // be on the PATH the tests run with.
                let cargo_bin = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
                    .map(|c| c.join("bin"));
                let dirs = std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default();
                let driver = dirs
                    .into_iter()
                    .chain(cargo_bin)
                    .map(|d| d.join("geckodriver"))
                    .find(|p| p.exists())?;
                Some((FIREFOX.into(), driver))
            }
        }
        .filter(|(b, d): &(PathBuf, PathBuf)| b.exists() && d.exists())
    }
}

/// Whether `kind` can run: a failure under `REWIND_REQUIRE_TOOLS`, else a loud skip.
pub fn available(kind: Kind) -> bool {
    let ok = kind.paths().is_some();
    if !ok {
        let what = match kind {
            Kind::Chromium => "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
            Kind::Firefox => "firefox-esr or geckodriver is not installed (apt-get install firefox-esr; cargo install geckodriver)",
        };
        assert!(std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(), "{what}");
        eprintln!("SKIPPED: {what}");
    }
    ok
}

pub struct Browser {
    pub rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// Where screenshots go (the test's scratch directory).
    pub shots: PathBuf,
    pub kind: Kind,
}

impl Browser {
    pub fn start(kind: Kind, work: &Path) -> Browser {
        // Two providers are linked (ring, and aws-lc-rs through the WebDriver client): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (binary, driver_path) = kind.paths().expect("the browser is installed");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log_path = work.join(format!("{}-driver.log", kind.name()));
        let log = std::fs::File::create(&log_path).unwrap();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let profile = work.join(format!("{}-profile", kind.name()));
        std::fs::create_dir_all(&profile).unwrap();
        let shots = work.join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut b = Browser {
            rt,
            client: None,
            driver,
            shots,
            kind,
        };
        let caps = match kind {
            Kind::Chromium => json!({
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--ignore-certificate-errors", "--window-size=1280,1400",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }),
            Kind::Firefox => json!({
                "acceptInsecureCerts": true,
                "moz:firefoxOptions": {
                    "binary": binary,
                    "args": ["-headless", "--width=1280", "--height=1400",
                             "-profile", profile.display().to_string()],
                    // Nothing fetched from the internet while the test runs.
                    "prefs": {
                        "app.update.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "network.captive-portal-service.enabled": false,
                        "extensions.update.enabled": false
                    }
                }
            }),
        };
        let caps: fantoccini::wd::Capabilities = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let r = b.rt.block_on(async {
                ClientBuilder::rustls()
                    .expect("rustls client")
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
            });
            match r {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "{} on {url}: {e}\n{}",
                        driver_path.display(),
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        b.client = Some(client);
        b
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.c().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Run `script` (a function body: `return ...`) in the page.
    pub fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The text of the first element matching `css` ("" if none).
    pub fn text(&self, css: &str) -> String {
        let s = format!(
            "const e = document.querySelector({}); return e ? e.textContent : '';",
            json!(css)
        );
        self.js(&s).as_str().unwrap_or_default().trim().to_string()
    }

    pub fn count(&self, css: &str) -> u64 {
        self.js(&format!(
            "return document.querySelectorAll({}).length;",
            json!(css)
        ))
        .as_u64()
        .unwrap_or(0)
    }

    pub fn fill(&self, css: &str, text: &str) {
        self.rt.block_on(async {
            let e = self.c().find(Locator::Css(css)).await.expect(css);
            e.clear().await.expect("clear");
            e.send_keys(text).await.expect("type");
        });
    }

    pub fn select(&self, css: &str, value: &str) {
        let ok = self.js(&format!(
            "const e = document.querySelector({}); if (!e) return false; e.value = {}; return e.value === {};",
            json!(css),
            json!(value),
            json!(value)
        ));
        assert_eq!(ok, json!(true), "select {value} in {css}");
    }

    pub fn click(&self, css: &str) {
        // Into the middle of the view first: a button at the very edge of Firefox's viewport
        // can take WebDriver's click without a click event reaching it.
        self.js(&format!(
            "const e = document.querySelector({}); if (e) e.scrollIntoView({{block: 'center'}}); return 1;",
            json!(css)
        ));
        self.rt.block_on(async {
            let e = self.c().find(Locator::Css(css)).await.expect(css);
            e.click().await.expect("click");
        });
    }

    pub fn url(&self) -> String {
        self.rt
            .block_on(self.c().current_url())
            .unwrap()
            .to_string()
    }

    pub fn cookie(&self, name: &str) -> fantoccini::cookies::Cookie<'static> {
        self.rt
            .block_on(self.c().get_named_cookie(name))
            .unwrap_or_else(|e| panic!("cookie {name}: {e}"))
    }

    /// Wait for `f` (polled every 200 ms) up to `limit`.
    pub fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut(&Browser) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() >= limit {
                // The page as it was, kept with the artifacts: what a failure needs first.
                if let Ok(png) = self.rt.block_on(self.c().screenshot()) {
                    let name = format!("timeout-{}.png", self.kind.name());
                    let _ = std::fs::write(self.shots.join(&name), png);
                    keep_screenshots(&self.shots);
                }
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; page at {}:\n{}",
                self.url(),
                self.text("main")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Save a screenshot as `NAME.png` and check it is not blank: a decodable PNG of more than
    /// one colour. Returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        // Chromium's screenshots keep their plain names; Firefox's are prefixed.
        let path = match self.kind {
            Kind::Chromium => self.shots.join(format!("{name}.png")),
            Kind::Firefox => self.shots.join(format!("firefox-{name}.png")),
        };
        std::fs::write(&path, &png).unwrap();
        assert!(
            distinct_colours(&png) > 1,
            "screenshot {name} is blank: {}",
            path.display()
        );
        path
    }
}

/// How many distinct pixel values a PNG holds (stops counting at 16).
pub fn distinct_colours(png_bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let px = info.color_type.samples()
        * if info.bit_depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
    let mut seen: Vec<&[u8]> = Vec::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        if !seen.contains(&p) {
            seen.push(p);
            if seen.len() >= 16 {
                break;
            }
        }
    }
    seen.len()
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Copy the screenshots where CI keeps artifacts: `target/console-screenshots/`.
pub fn keep_screenshots(from: &Path) {
    let to = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("console-screenshots");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let _ = std::fs::copy(e.path(), to.join(e.file_name()));
    }
}
