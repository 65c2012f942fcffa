//! Every reply the listener sends, in one place, so the wording and the codes
//! (RFC 5321 reply codes with RFC 3463 enhanced status codes) can be reviewed together.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One SMTP reply: `code esc text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub esc: &'static str,
    pub text: Cow<'static, str>,
}

const fn r(code: u16, esc: &'static str, text: &'static str) -> Reply {
    Reply {
        code,
        esc,
        text: Cow::Borrowed(text),
    }
}

fn owned(code: u16, esc: &'static str, text: String) -> Reply {
    Reply {
        code,
        esc,
        text: Cow::Owned(text),
    }
}

impl Reply {
    /// Appends the reply line (CRLF-terminated) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(16 + self.text.len());
        if self.esc.is_empty() {
            let _ = write!(s, "{} {}\r\n", self.code, self.text);
        } else {
            let _ = write!(s, "{} {} {}\r\n", self.code, self.esc, self.text);
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// A negative reply (4xx / 5xx): counted in `bouncelens_smtp_rejections_total`.
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    pub fn ok() -> Reply {
        r(250, "2.0.0", "Ok")
    }
    pub fn sender_ok() -> Reply {
        r(250, "2.1.0", "Ok")
    }
    pub fn recipient_ok() -> Reply {
        r(250, "2.1.5", "Ok")
    }
    pub fn start_data() -> Reply {
        r(354, "", "End data with <CR><LF>.<CR><LF>")
    }
    pub fn queued(id: &str) -> Reply {
        owned(250, "2.0.0", format!("Ok: queued as {id}"))
    }
    /// LMTP: one of these per recipient after DATA.
    pub fn queued_for(rcpt: &str, id: &str) -> Reply {
        owned(250, "2.1.5", format!("<{rcpt}> Ok: queued as {id}"))
    }
    pub fn bye() -> Reply {
        r(221, "2.0.0", "Bye")
    }
    pub fn vrfy() -> Reply {
        r(
            252,
            "2.5.2",
            "Cannot VRFY user, but will accept bounces for it",
        )
    }
    pub fn help() -> Reply {
        r(
            214,
            "2.0.0",
            "bouncelens accepts bounces: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT",
        )
    }
    pub fn tls_ready() -> Reply {
        r(220, "2.0.0", "Ready to start TLS")
    }

    pub fn too_many_connections() -> Reply {
        r(421, "4.7.0", "Too many connections, try again later")
    }
    pub fn too_many_errors() -> Reply {
        r(421, "4.7.0", "Too many errors, closing connection")
    }
    pub fn idle_timeout() -> Reply {
        r(421, "4.4.2", "Timeout exceeded, closing connection")
    }
    pub fn shutting_down() -> Reply {
        r(421, "4.3.2", "Service shutting down, try again later")
    }
    pub fn spool_error() -> Reply {
        r(
            451,
            "4.3.0",
            "Temporary failure: cannot store the message, try again later",
        )
    }
    pub fn too_many_recipients() -> Reply {
        r(452, "4.5.3", "Too many recipients")
    }

    pub fn unknown_command() -> Reply {
        r(500, "5.5.2", "Error: command not recognized")
    }
    pub fn line_too_long(limit: usize) -> Reply {
        owned(500, "5.5.2", format!("Line too long (limit {limit} bytes)"))
    }
    pub fn syntax(syntax: &str) -> Reply {
        owned(501, "5.5.4", format!("Syntax: {syntax}"))
    }
    pub fn bad_sender() -> Reply {
        r(501, "5.1.7", "Bad sender address syntax")
    }
    pub fn bad_recipient() -> Reply {
        r(501, "5.1.3", "Bad recipient address syntax")
    }
    pub fn bad_parameter(param: &str) -> Reply {
        owned(501, "5.5.4", format!("Invalid parameter {param}"))
    }
    pub fn not_implemented() -> Reply {
        r(502, "5.5.1", "Command not implemented")
    }
    pub fn need_helo() -> Reply {
        r(503, "5.5.1", "Error: send HELO/EHLO first")
    }
    pub fn need_lhlo() -> Reply {
        r(503, "5.5.1", "Error: send LHLO first")
    }
    pub fn nested_mail() -> Reply {
        r(503, "5.5.1", "Error: nested MAIL command")
    }
    pub fn need_mail() -> Reply {
        r(503, "5.5.1", "Error: need MAIL command")
    }
    pub fn need_rcpt() -> Reply {
        r(503, "5.5.1", "Error: need RCPT command")
    }
    pub fn tls_in_transaction() -> Reply {
        r(
            503,
            "5.5.1",
            "Error: STARTTLS is not allowed inside a mail transaction",
        )
    }
    pub fn tls_already() -> Reply {
        r(503, "5.5.1", "Error: TLS already active")
    }
    pub fn wrong_greeting(lmtp: bool) -> Reply {
        if lmtp {
            r(500, "5.5.1", "Error: this is an LMTP server, use LHLO")
        } else {
            r(
                500,
                "5.5.1",
                "Error: this is an SMTP server, use EHLO or HELO",
            )
        }
    }
    pub fn relay_denied(rcpt: &str) -> Reply {
        owned(550, "5.7.1", format!(
                "<{rcpt}>: Recipient address rejected: this host only accepts bounces for its own addresses (relay access denied)"
            ))
    }
    pub fn too_big(limit: u64) -> Reply {
        owned(
            552,
            "5.3.4",
            format!("Message size exceeds fixed maximum message size ({limit} bytes)"),
        )
    }
    pub fn unsupported_parameter(param: &str) -> Reply {
        owned(555, "5.5.4", format!("Unsupported parameter {param}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_single_crlf_lines() {
        let mut out = Vec::new();
        Reply::queued("ABC123").write_to(&mut out);
        Reply::relay_denied("x@evil.test").write_to(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("250 2.0.0 Ok: queued as ABC123\r\n550 5.7.1 <x@evil.test>:"));
        assert_eq!(text.matches("\r\n").count(), 2);
    }
}
