//! The web UI on a fake home, for working on the pages without a router:
//! `cargo run -p bulkhead-web --features testing --example fake_home -- 127.0.0.1:8080 [devices]`.
//! The password is `correct horse battery`; with a device count, that many
//! generated devices instead of the demo home.

use std::net::SocketAddr;
use std::sync::Arc;

use bulkhead_web::testing::FakeBackend;
use bulkhead_web::WebSettings;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let fake = match args.next().and_then(|n| n.parse().ok()) {
        Some(n) => FakeBackend::with_devices(n),
        None => FakeBackend::demo(),
    };
    println!("http://{addr}/ (password: correct horse battery)");
    bulkhead_web::serve(
        addr,
        Arc::new(fake),
        WebSettings {
            allowed_hosts: vec![addr.to_string(), format!("localhost:{}", addr.port())],
        },
    )
    .await
}
