//! A Lua script call written straight into one command. redis-rs's `ScriptInvocation` keeps
//! every key and argument in a buffer of its own and copies them all into the command it
//! sends; a limited request makes two calls of about twenty keys and arguments each, so that
//! was some fifty allocations a request. Here they go into one `Cmd` as they come, keys
//! first (their count is known up front), and the call is sent as `invoke_async` sends it:
//! `EVALSHA`, then on `NOSCRIPT` the script is loaded and the call sent once more.

use std::fmt;
use std::io::Write;

use redis::{Cmd, RedisWrite, Script, ToRedisArgs};

/// One `EVALSHA` of a script, built key by key and then argument by argument.
#[derive(Debug)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    cmd: Cmd,
    /// Keys still to come before the first argument.
    keys_left: usize,
}

impl<'a> ScriptCall<'a> {
    /// A call of `script` that will name `keys` keys.
    pub fn new(script: &'a Script, keys: usize) -> Self {
        let mut cmd = Cmd::with_capacity(3 + keys * 2, 256);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Self {
            script,
            cmd,
            keys_left: keys,
        }
    }

    /// Adds the next key.
    pub fn key(&mut self, key: &str) -> &mut Self {
        self.count_key();
        self.cmd.arg(key);
        self
    }

    /// Adds the next key, formatted in place (no string of its own).
    pub fn key_fmt(&mut self, key: fmt::Arguments<'_>) -> &mut Self {
        self.count_key();
        // Writing into the command's buffer cannot fail.
        let _ = self.cmd.writer_for_next_arg().write_fmt(key);
        self
    }

    /// Adds the next argument; every key must be in by then.
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        debug_assert_eq!(
            self.keys_left, 0,
            "a script's keys come before its arguments"
        );
        self.cmd.arg(arg);
        self
    }

    fn count_key(&mut self) {
        debug_assert!(self.keys_left > 0, "more keys than the call was made for");
        self.keys_left = self.keys_left.saturating_sub(1);
    }

    /// Runs the call on `connection`, loading the script first if Redis does not have it.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        debug_assert_eq!(self.keys_left, 0, "fewer keys than the call was made for");
        match self.cmd.query_async(connection).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.script.load_async(connection).await?;
                self.cmd.query_async(connection).await
            }
            result => result,
        }
    }

    /// The command's arguments as Redis receives them (tests).
    #[cfg(test)]
    pub fn args(&self) -> Vec<Vec<u8>> {
        self.cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => b"<cursor>".to_vec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_then_arguments_follow_the_hash_and_the_key_count() {
        let script = Script::new("return 1");
        let mut call = ScriptCall::new(&script, 3);
        call.key("a")
            .key_fmt(format_args!("{}:held", "a"))
            .key("{t}:lease:x")
            .arg(7_u64)
            .arg(-1_i64)
            .arg("lease");
        let expected: Vec<&[u8]> = vec![
            b"EVALSHA",
            script.get_hash().as_bytes(),
            b"3",
            b"a",
            b"a:held",
            b"{t}:lease:x",
            b"7",
            b"-1",
            b"lease",
        ];
        assert_eq!(call.args(), expected);
    }
}
