//! `mock-upstream [PORT]`: serves the mock OpenAI, Anthropic and Gemini APIs on 127.0.0.1 and
//! prints its base URL (`http://127.0.0.1:PORT`) on the first line of stdout.

use llm_gateway_mock_upstream::MockUpstream;

#[tokio::main]
async fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mock = MockUpstream::start_on(port).await;
    println!("{}", mock.base_url.trim_end_matches("/v1"));
    std::future::pending::<()>().await;
}
