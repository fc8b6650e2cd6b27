//! The files under `deploy/` parse, hang together, and carry configurations the real binary accepts:
//! the Kubernetes manifests and the compose file as YAML with the objects they promise, the Tacet
//! configurations inside them through `tacet`'s own loader, the Dockerfile's stages and toolchain, and the
//! systemd unit's sections.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::server::tacet_with_env;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy().join(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// Every document of a YAML file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("deploy/{rel} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Checks a Tacet configuration with the binary itself (`privacy explain` loads and validates all of it).
fn accepted_by_tacet(toml: &str, tenant: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tacet.toml");
    std::fs::write(&path, toml).unwrap();
    let out = tacet_with_env(
        &[
            "--config",
            path.to_str().unwrap(),
            "privacy",
            "explain",
            tenant,
        ],
        env,
    );
    assert!(
        out.status.success(),
        "tacet refuses the configuration:\n{toml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_manifests_parse_and_carry_a_valid_configuration() {
    let kustomization = &yaml_docs("kubernetes/kustomization.yaml")[0];
    let mut kinds = Vec::new();
    for resource in kustomization["resources"].as_array().unwrap() {
        let file = format!("kubernetes/{}", resource.as_str().unwrap());
        for doc in yaml_docs(&file) {
            assert!(doc["apiVersion"].is_string(), "{file}: apiVersion");
            assert!(doc["metadata"]["name"].is_string(), "{file}: metadata.name");
            kinds.push((doc["kind"].as_str().unwrap().to_owned(), doc));
        }
    }
    let find = |kind: &str| {
        kinds
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("no {kind} in the manifests"))
    };

    // Ingestion: a StatefulSet whose pods each keep a WAL volume at the data directory and take their
    // node id from the pod index, sharing nothing but the bucket (no other volume claim), scaled by a
    // HorizontalPodAutoscaler.
    let sts = find("StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "serve");
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no volume mount {name}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "wal"
    );
    assert_eq!(mount("wal"), "/var/lib/tacet");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["persistentVolumeClaim"].is_null()),
        "a pod mounts a shared volume"
    );
    assert!(
        !kinds.iter().any(|(k, _)| k == "PersistentVolumeClaim"),
        "a shared volume claim"
    );
    let hpa = find("HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        sts["metadata"]["name"]
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "TACET_NODE_ID")
    );
    let service = find("Service");
    assert_eq!(
        service["spec"]["selector"],
        sts["spec"]["selector"]["matchLabels"]
    );
    let cron = find("CronJob");
    let job = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job["args"][0], "retention");
    assert_eq!(job["args"][1], "run");

    // The configuration in the ConfigMap: the real loader accepts it, and its paths are the mounts.
    let config = find("ConfigMap")["data"]["tacet.toml"].as_str().unwrap();
    accepted_by_tacet(
        config,
        "acme",
        &[("ACME_READ_KEY", "r"), ("ACME_ADMIN_KEY", "a")],
    );
    let parsed: toml::Value = toml::from_str(config).unwrap();
    assert_eq!(parsed["data_dir"].as_str(), Some(mount("wal").as_str()));
    assert!(parsed.get("shared_dir").is_none());
    assert_eq!(parsed["shared_state"].as_str(), Some("lake"));
    assert_eq!(parsed["storage"]["backend"].as_str(), Some("s3"));
    assert!(
        job["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "shared"),
        "the CronJob mounts a shared volume"
    );

    // The example Secrets cover what the pods read, and applied unchanged they stop the pod, naming
    // every placeholder.
    let secrets = yaml_docs("kubernetes/secrets.example.yaml");
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Secret {name}"))["stringData"]
            .as_object()
            .unwrap()
            .clone()
    };
    let mut env: Vec<(String, String)> = secret("tacet-secrets")
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
        .collect();
    let master = secret("tacet-master-key")["master-key"]
        .as_str()
        .unwrap()
        .to_owned();
    env.push(("TACET_MASTER_KEY".into(), master));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (err, _) = crate::production::refused_after(config, &env);
    for name in ["ACME_READ_KEY", "ACME_ADMIN_KEY", "TACET_MASTER_KEY"] {
        assert!(err.contains(name), "{name} not named in:\n{err}");
    }
}

#[test]
fn the_compose_file_starts_tacet_on_its_s3_store_with_a_valid_configuration() {
    let compose = &yaml_docs("compose.yaml")[0];
    let services = compose["services"].as_object().unwrap();
    for name in ["s3", "tacet", "ballista-scheduler", "ballista-executor"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    let command = |service: &str| -> Vec<String> {
        services[service]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let scheduler = command("ballista-scheduler");
    assert!(
        scheduler.windows(2).any(|w| w == ["ballista", "scheduler"]),
        "{scheduler:?}"
    );
    let executor = command("ballista-executor");
    assert!(
        executor.windows(2).any(|w| w == ["ballista", "executor"]),
        "{executor:?}"
    );
    assert!(
        executor
            .windows(2)
            .any(|w| w == ["--scheduler", "ballista-scheduler:50050"]),
        "{executor:?}"
    );
    let tacet = &services["tacet"];
    let dockerfile = tacet["build"]["dockerfile"].as_str().unwrap();
    assert!(
        deploy().join("..").join(dockerfile).is_file(),
        "{dockerfile}"
    );
    let config_mount = tacet["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(":/etc/tacet/tacet.toml:ro"))
        .expect("the configuration is mounted");
    let host = config_mount.split(':').next().unwrap();
    let config = read(host.trim_start_matches("./"));
    let env = tacet["environment"].as_object().unwrap();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    accepted_by_tacet(&config, "demo", &env);
    let parsed: toml::Value = toml::from_str(&config).unwrap();
    assert!(
        parsed["storage"]["endpoint"]
            .as_str()
            .unwrap()
            .contains("//s3:"),
        "the lake is on the compose file's S3 service"
    );
    assert_eq!(
        parsed["query"]["ballista"].as_str(),
        Some("df://ballista-scheduler:50050"),
        "the server's SQL goes to the compose file's scheduler"
    );
}

#[test]
fn the_dockerfile_builds_with_the_pinned_toolchain_in_two_stages() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    let toolchain = std::fs::read_to_string(deploy().join("../rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    let minor = channel.rsplit_once('.').map_or(channel, |(m, _)| m);
    assert!(
        froms[0].starts_with(&format!("FROM rust:{minor}")) && froms[0].ends_with(" AS build"),
        "build stage on the pinned toolchain {channel}: {}",
        froms[0]
    );
    assert!(text.contains("COPY --from=build "));
    assert!(text.contains("cargo build --release --locked -p tacet"));
    assert!(text.contains("ENTRYPOINT [\"tacet\"]"));
    let known = [
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "USER",
        "VOLUME",
        "ENV",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "HEALTHCHECK",
    ];
    // Every instruction (continuation lines and comments aside) is one Docker knows.
    let mut continued = false;
    for line in text.lines() {
        let l = line.trim();
        if !continued && !l.is_empty() && !l.starts_with('#') {
            let word = l.split_whitespace().next().unwrap();
            assert!(known.contains(&word), "unknown instruction: {line}");
        }
        continued = l.ends_with('\\');
    }
}

#[test]
fn the_systemd_unit_has_its_sections_and_runs_tacet_serve() {
    let text = read("tacet.service");
    let mut section = String::new();
    let mut seen = Vec::new();
    let mut exec = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            seen.push(section.clone());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=Value: {line}"));
        assert!(!section.is_empty(), "{key} outside any section");
        if (section.as_str(), key) == ("Service", "ExecStart") {
            exec = Some(value.to_owned());
        }
    }
    assert_eq!(seen, ["Unit", "Service", "Install"]);
    let exec = exec.expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/tacet serve --config "),
        "{exec}"
    );
    for hardening in [
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/tacet",
        "NoNewPrivileges=yes",
        "UMask=0077",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.lines().any(|l| l.trim() == hardening), "{hardening}");
    }
}

/// `systemd-analyze verify` on the unit (its binary path pointed at the binary under test, which is all
/// that differs from an installed one), and the install script run into a scratch root.
#[test]
fn the_systemd_unit_verifies_and_the_install_script_lays_out_a_host() {
    let root = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .arg(deploy().join("install-systemd.sh"))
        .arg(crate::server::BIN)
        .env("ROOT", root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let etc = root.path().join("etc/tacet");
    for file in ["tacet.toml", "tacet.env"] {
        assert!(etc.join(file).is_file(), "{file}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&etc.join("tacet.env")),
        0o600,
        "secrets are root's only"
    );
    assert_eq!(mode(&etc.join("tacet.toml")), 0o640);
    let installed = root.path().join("usr/local/bin/tacet");
    assert!(installed.is_file());
    // The configuration it installs is the example, which the real loader accepts.
    accepted_by_tacet(
        &std::fs::read_to_string(etc.join("tacet.toml")).unwrap(),
        "acme",
        &[("ACME_READ_KEY", "r"), ("ACME_ADMIN_KEY", "a")],
    );
    // A second run keeps what was filled in.
    std::fs::write(etc.join("tacet.env"), "ACME_READ_KEY=kept\n").unwrap();
    let again = std::process::Command::new("sh")
        .arg(deploy().join("install-systemd.sh"))
        .arg(crate::server::BIN)
        .env("ROOT", root.path())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(etc.join("tacet.env")).unwrap(),
        "ACME_READ_KEY=kept\n"
    );

    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/tacet.service"))
        .unwrap()
        .replace("/usr/local/bin/tacet", installed.to_str().unwrap());
    let checked = root.path().join("tacet.service");
    std::fs::write(&checked, unit).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs systemd-analyze (Debian: apt install systemd; .ci/run does): {e}"
            )
        });
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// The runtime stage of the Dockerfile: its `ENV` pairs and its JSON-array instructions.
struct Image {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    workdir: String,
}

fn image() -> Image {
    let text = read("Dockerfile");
    let runtime = text.rsplit("\nFROM ").next().unwrap();
    let json = |line: &str| -> Vec<String> { serde_json::from_str(line.trim()).unwrap() };
    let mut image = Image {
        env: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        healthcheck: Vec::new(),
        workdir: String::new(),
    };
    for line in runtime.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap();
                image.env.push((k.to_owned(), v.to_owned()));
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            image.entrypoint = json(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            image.cmd = json(rest);
        } else if let Some(rest) = line.strip_prefix("HEALTHCHECK ") {
            image.healthcheck = json(rest.split_once(" CMD ").unwrap().1);
        } else if let Some(rest) = line.strip_prefix("WORKDIR ") {
            image.workdir = rest.trim().to_owned();
        }
    }
    image
}

/// Runs `argv` (the image's `tacet` replaced by the binary under test) with the image's environment,
/// `/var/lib/tacet` mapped to `root` and the port to `port`.
fn in_image(
    image: &Image,
    argv: &[String],
    root: &Path,
    port: u16,
    extra: &[(&str, String)],
) -> std::process::Command {
    assert_eq!(argv[0], "tacet", "{argv:?}");
    let mut command = std::process::Command::new(crate::server::BIN);
    command.args(&argv[1..]).current_dir(root).env_clear();
    for (k, v) in &image.env {
        let v = v
            .replace(&image.workdir, root.to_str().unwrap())
            .replace(":8080", &format!(":{port}"));
        command.env(k, v);
    }
    command.envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// The status of `GET path` on loopback.
fn status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Polls the image's health check until it passes (30 s at most).
fn healthy(image: &Image, root: &Path, port: u16, extra: &[(&str, String)]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = in_image(image, &image.healthcheck, root, port, extra)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the health check never passed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_image_runs_as_built_and_a_mounted_configuration_takes_over() {
    let image = image();
    assert_eq!(image.entrypoint, ["tacet"]);
    assert_eq!(image.healthcheck[0], "tacet");
    let ignore = std::fs::read_to_string(deploy().join("../.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ stays out of the build context"
    );
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();

    // As built: the embedded demo, on the image's port, in its volume.
    let root = tempfile::tempdir().unwrap();
    let port = crate::server::free_port();
    let mut server = in_image(&image, &argv, root.path(), port, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let said = healthy(&image, root.path(), port, &[]);
    assert!(said.ends_with("ready\n"), "{said}");
    assert_eq!(
        status(port, "/demo"),
        200,
        "the demo page of the embedded configuration"
    );
    assert!(
        root.path().join("wal").is_dir(),
        "the data lives in the image's volume"
    );
    server.kill().unwrap();
    server.wait().unwrap();

    // A configuration mounted at /etc/tacet/tacet.toml and named by TACET_CONFIG replaces the demo.
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("tacet.toml");
    std::fs::write(
        &config,
        "[[tenant]]\nid = \"mine\"\ningest_key = \"mine-ingest\"\nread_key = \"4f0d9a7c2e81b356d4c9e07a1b2f3c8d\"\n",
    )
    .unwrap();
    let port = crate::server::free_port();
    let mounted = [("TACET_CONFIG", config.display().to_string())];
    let mut server = in_image(&image, &argv, root.path(), port, &mounted)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    healthy(&image, root.path(), port, &mounted);
    assert_eq!(
        status(port, "/demo"),
        404,
        "no demo page with a real configuration"
    );
    server.kill().unwrap();
    server.wait().unwrap();

    // Compose checks the same way.
    let compose = &yaml_docs("compose.yaml")[0];
    let test: Vec<String> =
        serde_json::from_value(compose["services"]["tacet"]["healthcheck"]["test"].clone())
            .unwrap();
    assert_eq!(test[0], "CMD");
    assert_eq!(test[1..], image.healthcheck[..]);
}
