//! Runs `miltertest` (Debian package `miltertest`, OpenDKIM's milter test
//! facility) Lua scripts against a milter socket.
//!
//! miltertest negotiates like Postfix 3.7 (version 6, actions 0x1FF, protocol
//! 0x1FFFFF) but sends no macros, no `A` (abort) before `Q`, and MAIL/RCPT
//! arguments exactly as given in the script. If the filter negotiates a `NO*`
//! step away, calling that step is an error, and after an `NR_*` step
//! `mt.getreply` still returns the previous reply; [`PRELUDE`] wraps every
//! step so that scripts behave like Postfix whatever the filter negotiates.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;

use crate::harness::{require_tool, run_cmd};

/// Lua helpers prepended to every script. `SOCKET` is defined with `-D`.
///
/// * `open()` connects (retrying 50 × 0.1 s) and negotiates;
/// * `step(conn, name, no_flag, nr_flag, fn, ...)` runs one protocol step
///   unless negotiated away and returns the filter's reply (or `nil` when the
///   step was skipped or is no-reply);
/// * `expect(cond, msg)` raises a Lua error (exit status 1) with `msg`.
pub const PRELUDE: &str = r#"
function expect(cond, msg)
  if not cond then error("EXPECTATION FAILED: " .. msg, 2) end
end
function open()
  local conn = mt.connect(SOCKET, 50, 0.1)
  expect(conn ~= nil, "mt.connect(" .. SOCKET .. ") failed")
  local err = mt.negotiate(conn, nil, nil, nil)
  expect(err == nil, "mt.negotiate failed: " .. tostring(err))
  return conn
end
function step(conn, name, no_flag, nr_flag, fn, ...)
  if no_flag ~= nil and mt.test_option(conn, no_flag) then
    mt.echo(name .. ": negotiated away")
    return nil
  end
  local err = fn(conn, ...)
  expect(err == nil, name .. " failed: " .. tostring(err))
  if nr_flag ~= nil and mt.test_option(conn, nr_flag) then
    mt.echo(name .. ": no reply negotiated")
    return nil
  end
  local r = mt.getreply(conn)
  mt.echo(name .. " reply " .. string.char(r))
  return r
end
function rname(r)
  if r == nil then return "nil" end
  return string.char(r)
end
-- The envelope steps up to the first verdict other than continue. Returns
-- the reply of the step that ended it (or SMFIR_CONTINUE / nil).
function envelope(conn, from, rcpts)
  local r = step(conn, "conninfo", SMFIP_NOCONNECT, SMFIP_NR_CONN, mt.conninfo, "localhost", "127.0.0.1")
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "conninfo" end
  r = step(conn, "helo", SMFIP_NOHELO, SMFIP_NR_HELO, mt.helo, "client.mbtest.example")
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "helo" end
  r = step(conn, "mailfrom", SMFIP_NOMAIL, SMFIP_NR_MAIL, mt.mailfrom, from)
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "mailfrom" end
  for _, rc in ipairs(rcpts) do
    r = step(conn, "rcptto " .. rc, SMFIP_NORCPT, SMFIP_NR_RCPT, mt.rcptto, rc)
    if r ~= nil and r ~= SMFIR_CONTINUE then return r, "rcptto" end
  end
  return SMFIR_CONTINUE, "envelope"
end
-- DATA, headers, EOH, body; returns like envelope().
function content(conn, headers, body)
  local r = step(conn, "data", SMFIP_NODATA, SMFIP_NR_DATA, mt.data)
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "data" end
  for _, h in ipairs(headers) do
    r = step(conn, "header " .. h[1], SMFIP_NOHDRS, SMFIP_NR_HDR, mt.header, h[1], h[2])
    if r ~= nil and r ~= SMFIR_CONTINUE then return r, "header" end
  end
  r = step(conn, "eoh", SMFIP_NOEOH, SMFIP_NR_EOH, mt.eoh)
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "eoh" end
  r = step(conn, "body", SMFIP_NOBODY, SMFIP_NR_BODY, mt.bodystring, body)
  if r ~= nil and r ~= SMFIR_CONTINUE then return r, "body" end
  return SMFIR_CONTINUE, "content"
end
function eom(conn)
  local err = mt.eom(conn)
  expect(err == nil, "mt.eom failed: " .. tostring(err))
  local r = mt.getreply(conn)
  mt.echo("eom reply " .. rname(r))
  return r
end
"#;

/// Runs a script (after [`PRELUDE`]) against `socket` (`unix:/path`).
/// Returns miltertest's output; exit status 0 means every `expect` held.
///
/// # Errors
/// When the script cannot be written or miltertest does not finish in 60 s.
pub fn run(dir: &Path, name: &str, socket: &str, script: &str) -> Result<Output> {
    let mt = require_tool("miltertest", "miltertest");
    let path = dir.join(format!("{name}.lua"));
    fs::write(&path, format!("{PRELUDE}\n-- test: {name}\n{script}\n"))?;
    run_cmd(
        Command::new(mt)
            .arg("-v")
            .arg("-D")
            .arg(format!("SOCKET={socket}"))
            .arg("-s")
            .arg(&path),
        Duration::from_secs(60),
    )
}
