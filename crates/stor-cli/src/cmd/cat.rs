//! `stor cat URL` (and `stor cp URL -`): an object's bytes on stdout, streamed.

use anyhow::{anyhow, Result};
use futures::StreamExt;
use stor::{DownloadOptions, Storage};

use crate::args::CatArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::output::Output;
use crate::urls::object;

pub async fn cat(ctx: &Ctx, a: &CatArgs) -> Result<Exit> {
    let (scheme, bucket, key) = object(&a.url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(usage(format!("{} names no object", a.url)));
    }
    to_stdout(&ctx.out, ctx.store(scheme).await?, &bucket, &key).await?;
    Ok(ctx.status())
}

/// Streams an object to stdout; a closed pipe ends it quietly (see
/// [`crate::output`]).
pub async fn to_stdout(out: &Output, store: &Storage, bucket: &str, key: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut body = store
        .download_stream(bucket, key, DownloadOptions::default())
        .await?
        .body;
    let mut stdout = tokio::io::stdout();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        // Bytes already on stdout cannot be taken back: say how many there are.
        let chunk = chunk.map_err(|e| {
            anyhow!(
                "{e}; {written} bytes of it had already been written to stdout — \
                 discard them"
            )
        })?;
        if let Err(e) = stdout.write_all(&chunk).await {
            out.lose(e);
            return Ok(());
        }
        written += chunk.len() as u64;
    }
    if let Err(e) = stdout.flush().await {
        out.lose(e);
    }
    Ok(())
}
