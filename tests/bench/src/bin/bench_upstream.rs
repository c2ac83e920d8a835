//! `bench-upstream --port P [--chunks N] [--gap-ms G] [--first-byte-ms D]`: the benchmark's
//! mock OpenAI upstream on 127.0.0.1, one thread (the harness pins it to a core).

use std::time::Duration;

use clap::Parser;
use llm_gateway_bench::upstream::{UpstreamConfig, serve};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Port on 127.0.0.1 (0 picks one; the address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Data events per stream, counting the role event and the final usage event.
    #[arg(long, default_value_t = 200)]
    chunks: usize,
    /// Milliseconds between stream events.
    #[arg(long, default_value_t = 0)]
    gap_ms: u64,
    /// Milliseconds before response headers.
    #[arg(long, default_value_t = 0)]
    first_byte_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // A deep accept queue: a thousand streams open at once, and the default (1,024) would
        // drop SYNs and add a one-second retransmit to the direct baseline.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], args.port).into())?;
        let listener = socket.listen(4096)?;
        println!("http://{}", listener.local_addr()?);
        let config = UpstreamConfig {
            chunks: args.chunks.max(2),
            gap: Duration::from_millis(args.gap_ms),
            first_byte_delay: Duration::from_millis(args.first_byte_ms),
        };
        serve(listener, config).await
    })
}
