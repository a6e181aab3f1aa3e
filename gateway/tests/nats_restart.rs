//! The gateway (and the cluster behind it) riding through a NATS restart: a private
//! nats-server on a free port is killed and started again on the same port; the gateway
//! keeps answering (503/504 while the bus is away, never a hang or a 500) and serves writes
//! again afterwards, without being restarted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use instaface_testkit::{free_port, Cluster, ClusterOpts};
use serde_json::json;

struct Nats(Child);

impl Nats {
    fn start(port: u16) -> Nats {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        Nats(
            Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server"),
        )
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(http: &reqwest::Client, base: &str) -> Result<u16, reqwest::Error> {
    Ok(http.post(format!("{base}/api/entities/user")).json(&json!({"name": "x"})).send().await?.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rides_through_a_nats_restart() {
    let port = free_port();
    let mut nats = Nats::start(port);
    wait_port(port).await;
    let url = format!("nats://127.0.0.1:{port}");
    let cluster = Cluster::start_on_nats("gw-nats", ClusterOpts::default(), &url).await;
    let http_port = free_port();
    let log = std::fs::File::create(cluster.log_dir().join("gateway.log")).unwrap();
    let mut gw = Command::new(env!("CARGO_BIN_EXE_instaface-gateway"))
        .env("INSTAFACE_PREFIX", &cluster.prefix)
        .env("LISTEN_ADDR", format!("127.0.0.1:{http_port}"))
        .env("NATS_URL", &url)
        .env("LEADER_WAIT_MS", "500")
        .env("REQUEST_TIMEOUT_MS", "1000")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("gateway");
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let until_created = |what: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Ok(201) = create(&http, &base).await {
                    return;
                }
                assert!(Instant::now() < deadline, "no write served {what}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until_created("before the restart").await;

    // NATS goes away: the gateway answers at once, with a retryable error, and stays up.
    drop(nats);
    for _ in 0..3 {
        let status = create(&http, &base).await.expect("the gateway answers while NATS is down");
        assert!([503, 504].contains(&status), "{status} while NATS is down");
        let health = http.get(format!("{base}/healthz")).send().await.expect("healthz answers").status().as_u16();
        assert!([200, 503].contains(&health), "healthz {health}");
    }

    // NATS comes back on the same port: nodes and gateway reconnect by themselves.
    nats = Nats::start(port);
    wait_port(port).await;
    until_created("after NATS came back").await;
    assert!(matches!(gw.try_wait(), Ok(None)), "the gateway process ended");
    let _ = gw.kill();
    let _ = gw.wait();
    drop(nats);
}
