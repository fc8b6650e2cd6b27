//! A small driver for headless Chromium over the Chrome DevTools Protocol: one page, navigation, script
//! evaluation, real keyboard input and screenshots. Enough to use the dashboard the way a person does
//! (a form, a cookie, links), which `--dump-dom` cannot.
//!
//! Chromium is started with `--remote-debugging-port=0` and says on stderr where its WebSocket is; the
//! driver attaches to a new page target with a flat session and sends every command with its `sessionId`.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    ws: Socket,
    next: u64,
    session: String,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// What a command answered: its result, or the protocol's error.
type Answer = Result<Value, Value>;

impl Browser {
    /// Starts Chromium and opens one blank page.
    pub async fn launch(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium)
            .args(crate::browser::CHROMIUM_FLAGS)
            .args([
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("Chromium could not be started");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_owned());
                }
                said.push_str(&line);
                said.push('\n');
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("Chromium did not open its DevTools port; it said:\n{said}"));
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to Chromium's DevTools WebSocket");
        let mut b = Browser {
            ws,
            next: 0,
            session: String::new(),
            _child: child,
            _profile: profile,
        };
        let target = b
            .send("Target.createTarget", json!({"url": "about:blank"}), false)
            .await
            .unwrap();
        let attached = b
            .send(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                false,
            )
            .await
            .unwrap();
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({})).await;
        b
    }

    async fn send(&mut self, method: &str, params: Value, on_page: bool) -> Answer {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if on_page {
            msg["sessionId"] = self.session.clone().into();
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to Chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 60 s"))
                .expect("Chromium closed its DevTools connection")
                .expect("read from Chromium");
            let Ok(text) = msg.into_text() else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    /// A command on the page; panics on a protocol error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params.clone(), true)
            .await
            .unwrap_or_else(|e| panic!("{method} {params}: {e}"))
    }

    /// Evaluates JavaScript in the page and returns its value (promises awaited), or the exception.
    pub async fn try_eval(&mut self, js: &str) -> Answer {
        let r = self
            .send(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
                true,
            )
            .await?;
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    pub async fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js)
            .await
            .unwrap_or_else(|e| panic!("{js}: {e}"))
    }

    /// Waits until `condition` (JavaScript) is true in a loaded page.
    pub async fn wait_for(&mut self, condition: &str) {
        let js = format!("document.readyState === 'complete' && ({condition})");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // During a navigation the old document may be gone: that is an error, not an answer.
            if let Ok(Value::Bool(true)) = self.try_eval(&js).await {
                return;
            }
            if Instant::now() > deadline {
                let at = self.try_eval("location.href").await;
                panic!("waited 30 s for {condition}; the page is at {at:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks the current document, so that `wait_for_next_page` can tell when another one replaced it.
    async fn mark_page(&mut self) {
        let _ = self.try_eval("window.__tacetOld = true").await;
    }

    async fn wait_for_next_page(&mut self) {
        self.wait_for("window.__tacetOld === undefined").await;
    }

    /// Opens `url` and waits for its document (after any redirects) to load.
    pub async fn goto(&mut self, url: &str) {
        self.mark_page().await;
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for_next_page().await;
    }

    /// Runs `js` (a click, a submit) and waits for the page it leads to.
    pub async fn navigate_by(&mut self, js: &str) {
        self.mark_page().await;
        self.eval(js).await;
        self.wait_for_next_page().await;
    }

    /// Presses a key that leads to another page (Enter in a form), and waits for that page.
    pub async fn press_and_wait(&mut self, key: &str) {
        self.mark_page().await;
        self.press(key).await;
        self.wait_for_next_page().await;
    }

    /// Types text into the focused element, as a keyboard would.
    pub async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Presses a key (`Enter`, `Tab`) on the focused element.
    pub async fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Tab" => (9, ""),
            other => panic!("no key code for {other}"),
        };
        let mut down =
            json!({"type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code});
        if !text.is_empty() {
            down["text"] = text.into();
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code}),
        )
        .await;
    }

    /// The page's width and scale as a phone's (`Some(width)`) or back to the desktop window (`None`).
    /// A window `width` CSS pixels wide, as a desktop browser (`mobile` false) or a phone.
    pub async fn viewport(&mut self, width: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    pub async fn phone(&mut self, width: Option<u32>) {
        match width {
            Some(w) => {
                self.call(
                    "Emulation.setDeviceMetricsOverride",
                    json!({"width": w, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
                )
                .await;
            }
            None => {
                self.call("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await;
            }
        }
    }

    /// Saves a PNG of the whole page.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}
