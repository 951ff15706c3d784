//! The page in headless Chromium (Debian's `chromium`), driven over the DevTools protocol (JSON
//! over a WebSocket): the rendered DOM lists the test's services with a rate, a full queue and
//! a dead peer highlighted; opening the topic shows a peeked sample's bytes; a screenshot is
//! written to `monitor-screenshot.png` in the target directory as the test's artefact (with
//! the DOM beside it, `monitor-dom.html`). Skipped, with the reason printed, where Chromium is
//! not installed (`apt-get install -y chromium`; `.ci/run` installs it).

#![forbid(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Monitor, namespace, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn child_entry() {
    common::child_entry();
}

/// Where the artefacts go: the target directory (`target/` in CI).
fn artefact(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join(name)
}

/// Headless Chromium with a DevTools port, killed (with its profile removed) when dropped.
struct Browser {
    child: Child,
    /// The DevTools HTTP address.
    devtools: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on `url`.
    fn start(url: &str) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("a profile directory: {e}"))?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1500,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {CHROMIUM}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = sender.send(line[at..].to_owned());
                }
            }
        });
        let mut browser = Browser { child, devtools: String::new(), _profile: profile };
        let ws = receiver
            .recv_timeout(common::WAIT)
            .map_err(|_| "Chromium printed no DevTools address".to_owned())?;
        // ws://127.0.0.1:PORT/devtools/browser/ID
        let host = ws.trim_start_matches("ws://").split('/').next().unwrap_or_default();
        browser.devtools = format!("http://{host}");
        Ok(browser)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools session on one page.
struct Page {
    socket: common::Live,
    next_id: u64,
}

impl Page {
    /// Attaches to the page showing `url`.
    async fn attach(browser: &Browser, url: &str) -> Page {
        let deadline = Instant::now() + common::WAIT;
        let target = loop {
            let (_, targets) = common::get_json(&format!("{}/json/list", browser.devtools)).await;
            let page = targets.as_array().into_iter().flatten().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
            });
            if let Some(page) = page {
                break page.clone();
            }
            assert!(Instant::now() < deadline, "no page target for {url}: {targets}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ws = target["webSocketDebuggerUrl"].as_str().expect("a DevTools WebSocket URL");
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.expect("DevTools WebSocket");
        Page { socket, next_id: 1 }
    }

    /// Calls DevTools `method`; returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket.send(Message::text(request.to_string())).await.expect("send to DevTools");
        loop {
            let message = tokio::time::timeout(common::WAIT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .expect("DevTools open")
                .expect("a DevTools message");
            let Message::Text(text) = message else { continue };
            let answer: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result["exceptionDetails"].is_null(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true (an exception, as while the page loads, counts
    /// as false).
    async fn until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + common::WAIT;
        let guarded = format!(
            "(() => {{ try {{ return ({expression}) === true; }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(&guarded).await != true {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn the_page_lists_services_with_rates_and_shows_a_peek() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED: {CHROMIUM} is not installed (apt-get install -y chromium)");
        return;
    }
    let ns = namespace("page");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(100, true, 64);
    // ticks: a publisher, a subscriber that keeps up and one that stalls (a full queue);
    // quotes: a publisher killed with SIGKILL (a dead peer) and a subscriber.
    let _taker = start("subscribe", &[&ns, "ticks"]);
    let _staller = start("stall", &[&ns, "ticks"]);
    let _publisher = start("publish", &[&ns, "ticks", "200"]);
    let _quotes = start("subscribe", &[&ns, "quotes"]);
    start("publish", &[&ns, "quotes", "50"]).kill_while_running();

    let url = monitor.url("/");
    let browser = match Browser::start(&url) {
        Ok(browser) => browser,
        Err(reason) => {
            println!("SKIPPED: headless Chromium did not start: {reason}");
            return;
        }
    };
    common::runtime().block_on(async {
        let mut page = Page::attach(&browser, &url).await;
        let ticks = format!("{ns}.topic.ticks");
        let quotes = format!("{ns}.topic.quotes");
        let row = |id: &str| format!("document.querySelector('tr[data-id=\"{id}\"]')");
        page.until(
            "a live connection",
            "document.getElementById('connection').textContent === 'live'",
        )
        .await;
        // The services are listed, ticks with a rate, a full queue; quotes with its dead peer.
        page.until(
            "the services",
            &format!("{} !== null && {} !== null", row(&ticks), row(&quotes)),
        )
        .await;
        page.until(
            "a rate",
            &format!("Number({}.querySelector('td.rate').dataset.rate) > 50", row(&ticks)),
        )
        .await;
        page.until("the full queue", &format!("{}.classList.contains('full')", row(&ticks))).await;
        page.until("the dead peer", &format!("{}.classList.contains('dead')", row(&quotes))).await;
        let name = page.eval(&format!("{}.querySelector('button').textContent", row(&ticks))).await;
        assert_eq!(name, format!("{ns} / ticks"));
        let fill =
            page.eval(&format!("{}.querySelector('td .fill-text').textContent", row(&ticks))).await;
        assert!(fill.as_str().is_some_and(|f| f.contains("/128") && f.contains("full")), "{fill}");
        let dead =
            page.eval(&format!("{}.querySelector('.badge.dead').textContent", row(&quotes))).await;
        assert_eq!(dead, "1 dead");
        // Sparklines have history.
        page.until(
            "two seconds of history",
            "state.history.get(\"TICKS\").rate.length >= 20".replace("TICKS", &ticks).as_str(),
        )
        .await;

        // Opening the topic peeks at its samples: the publisher's marker is in the hex dump.
        page.eval(&format!("{}.querySelector('button').click()", row(&ticks))).await;
        page.until(
            "the peeked bytes",
            "document.getElementById('peek-hex').textContent.includes('21 45 4e 41 4c 4d 48 53')",
        )
        .await;
        page.until(
            "the monitor's own subscriber",
            "document.querySelector('#peers .badge') !== null",
        )
        .await;

        let dom = page.eval("document.documentElement.outerHTML").await;
        let dom = dom.as_str().expect("the DOM as text");
        assert!(dom.contains(&format!("{ns} / quotes")), "both services listed");
        std::fs::write(artefact("monitor-dom.html"), dom).expect("write the DOM");
        // The whole page, the peek below the table included.
        let metrics = page.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let clip =
            json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let params = json!({"format": "png", "captureBeyondViewport": true, "clip": clip});
        let shot = page.call("Page.captureScreenshot", params).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real PNG");
        let path = artefact("monitor-screenshot.png");
        std::fs::write(&path, png).expect("write the screenshot");
        println!("screenshot: {}", path.display());
    });
    drop(browser);
}
