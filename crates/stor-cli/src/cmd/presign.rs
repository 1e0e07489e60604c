//! `stor presign URL` (or `--stdin`, one URL a line): URLs that let others GET or
//! PUT an object for a while.

use anyhow::{anyhow, Result};
use stor::{PresignMethod, PresignOptions};

use crate::args::{Method, PresignArgs};
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::urls::object;

fn presign_opts(a: &PresignArgs) -> Result<PresignOptions> {
    if a.expires.is_zero() {
        return Err(usage(
            "--expires: must be 1 s to 7 days (e.g. 600, 10m, 12h, 7d)".into(),
        ));
    }
    Ok(PresignOptions {
        method: match a.method {
            Method::Get => PresignMethod::Get,
            Method::Put => PresignMethod::Put,
        },
        expires_in: a.expires,
        content_type: a.content_type.clone(),
    })
}

pub async fn presign(ctx: &Ctx, a: &PresignArgs) -> Result<Exit> {
    let opts = presign_opts(a)?;
    if a.stdin {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            // Keys may end in spaces: only the line ending goes.
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let res: Result<String> = async {
                let (scheme, bucket, key) = object(line)?;
                Ok(ctx
                    .store(scheme)
                    .await?
                    .presign(bucket.as_str(), &key, opts.clone())
                    .await?)
            }
            .await;
            match res {
                Ok(u) => ctx.out.say(&u),
                Err(e) => ctx.out.fail(&format!("presign {line}"), &e),
            }
        }
        return Ok(ctx.status());
    }
    let url_arg = a
        .url
        .as_deref()
        .ok_or_else(|| anyhow!("give a URL or --stdin"))?;
    let (scheme, bucket, key) = object(url_arg)?;
    let u = ctx
        .store(scheme)
        .await?
        .presign(bucket.as_str(), &key, opts)
        .await?;
    ctx.out.say(&u);
    Ok(ctx.status())
}
