//! The strfry write-policy plugin. In strfry.conf:
//! `relay.writePolicy.plugin = "/usr/local/bin/strfry-plugin"`, with
//! `KP_GATEWAY_URL` and `KP_RELAY_TOKEN` in strfry's environment.
//! Logs go to stderr; stdout carries only the answers.

use relay::{Gateway, RelayConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config = RelayConfig::from_env()?;
    let gateway = Gateway::new(&config)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let verdict = strfry_plugin::decide(&gateway, &line).await;
        let mut answer = serde_json::to_vec(&verdict)?;
        answer.push(b'\n');
        stdout.write_all(&answer).await?;
        stdout.flush().await?;
    }
    Ok(())
}
