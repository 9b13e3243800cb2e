//! `lethe openapi`: the OpenAPI document, without a running server.

pub(crate) fn run(demo: bool) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&lethe_server::openapi(demo))?
    );
    Ok(())
}
