//! The SMTP / LMTP listener.
