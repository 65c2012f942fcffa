//! The `bouncelens` command line: a thin layer over the library.

use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use bouncelens::classify;
use bouncelens::config::Config;
use bouncelens::model::{Lang, Row, StatusCode};
use bouncelens::rules::{MatchInput, RuleSet};

#[derive(Parser)]
#[command(
    name = "bouncelens",
    version,
    about = "Receive, classify and explain bounce messages (DSNs / NDRs)",
    long_about = "bouncelens receives delivery status notifications over SMTP or LMTP, keeps them \
                  durably on disk, classifies every failed recipient (status, reason, cause, who must \
                  fix it), exports Prometheus metrics and sends advice mail in English or Japanese.",
    after_help = "Examples:\n  \
                  bouncelens serve                                   run on built-in defaults (loopback)\n  \
                  bouncelens serve --config /etc/bouncelens/bouncelens.toml\n  \
                  bouncelens classify --format text bounce.eml       what went wrong, per recipient\n  \
                  bouncelens explain 5.7.1 \"Unable to relay\"         the matching rule and its advice\n  \
                  bouncelens check-config --config FILE              validate config and rules\n\n\
                  Exit status: 0 ok; 1 classify could not read an input or explain found no rule; \
                  2 any other error.\n\
                  Each command has its own help: bouncelens help COMMAND."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object per recipient row (the events-log format).
    Jsonl,
    /// One JSON array of all rows.
    Json,
    /// A readable summary per recipient.
    Text,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SMTP/LMTP listener, spool, metrics, advice mail).
    ///
    /// With no --config it runs on built-in defaults: SMTP on 127.0.0.1:2525 accepting any
    /// recipient, metrics on http://127.0.0.1:9465/metrics, spool and events log under ./var,
    /// advice written as .eml files under ./var/outbox (nothing is sent).
    ///
    /// Signals: SIGTERM / SIGINT stop accepting, let sessions finish ([smtp] shutdown_grace)
    /// and flush; SIGHUP reloads the rule files (a broken file is refused and the running
    /// rules stay) and reopens the events log. Logs go to standard error; RUST_LOG=debug
    /// shows more.
    Serve {
        /// Config file (TOML). Every key is optional; config/bouncelens.toml in the source
        /// tree lists them all with their defaults.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Log line format: text, or one JSON object per line.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Classify bounce files offline and print one result per recipient.
    ///
    /// PATH may be a file (one message, or an mbox of several), a directory (every file
    /// inside, recursively, in name order) or - for standard input.
    Classify {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Language of cause titles and advice: en or ja.
        #[arg(long, default_value = "en")]
        lang: Lang,
        /// Extra rule directory (may repeat); its rules add to or replace built-in ones.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
        /// Bounce files, mbox files, directories, or - for standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show which rule matches a status code (and optional diagnostic text), and its advice.
    Explain {
        /// Enhanced status code, e.g. 5.7.1
        status: String,
        /// Diagnostic text, e.g. "550 5.7.1 Unable to relay"
        text: Vec<String>,
        /// Language of the title, advice and steps: en or ja.
        #[arg(long, default_value = "en")]
        lang: Lang,
        /// Extra rule directory (may repeat), as for classify.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
    /// Load and validate the config and rule files; report exactly what is wrong.
    ///
    /// Checks the config file, every rule file it names ([rules] dirs) and the TLS
    /// certificate and key; prints the file, line and key of the first error and exits 2,
    /// or "ok", the number of rules loaded and any warnings.
    CheckConfig {
        /// Config file to check (TOML); without it, the built-in defaults.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// mimalloc instead of glibc's allocator: parsing allocates many short-lived strings, and
/// malloc/free were ~10 % of the CPU time of `classify` and ~16 % (with memmove) of the
/// daemon's; mimalloc took `classify` over the 10x corpus from ~340 to ~300 ms CPU
/// together with LTO (scripts/bench-classify.sh). Built with `no_thp`: with transparent
/// huge pages mimalloc's eagerly committed arenas put the idle daemon at ~32 MB RSS
/// instead of ~15 MB (glibc: ~13 MB).
///
/// The `mimalloc` crate's allocator calls `mi_malloc_aligned` for every allocation,
/// ~50 instructions where `mi_malloc` takes ~20; almost every allocation here asks for
/// an alignment `mi_malloc` always gives, so [`Mimalloc`] calls the plain functions for
/// those (about −3 % of the instructions of `classify` over the 10x corpus).
#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

/// mimalloc as the global allocator, the plain entry points where they suffice.
struct Mimalloc;

/// The alignment every mimalloc block has, whatever its size (a pointer's).
const MI_MIN_ALIGN: usize = std::mem::size_of::<usize>();

// SAFETY: each method hands the layout to the mimalloc function that honours it:
// `mi_malloc` and `mi_realloc` return blocks aligned to at least `MI_MIN_ALIGN`, and
// larger alignments go to the `_aligned` variants. Every block is freed by `mi_free`.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: plain calls into mimalloc with a size and a power-of-two alignment.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps
        // its alignment as `alloc` would give it.
        unsafe {
            if layout.align() <= MI_MIN_ALIGN {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(config.as_deref(), log_format),
        Command::Classify {
            format,
            lang,
            rules,
            paths,
        } => classify_cmd(format, lang, &rules, &paths),
        Command::Explain {
            status,
            text,
            lang,
            rules,
        } => explain(&status, &text.join(" "), lang, &rules),
        Command::CheckConfig { config } => check_config(config.as_deref()),
    };
    match result {
        Ok(code) => code,
        // `bouncelens classify ... | head` closes the pipe early: not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bouncelens: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, skipping causes the message already quotes.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

fn load_rules(builtin: bool, dirs: &[PathBuf]) -> Result<RuleSet> {
    Ok(RuleSet::from_config(builtin, dirs)?)
}

fn serve(config: Option<&Path>, log_format: LogFormat) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    // RUST_LOG as `level` or `target=level,...` (tracing-subscriber's `Targets`: its
    // `EnvFilter` would pull in full-DFA regex building, which then slows every
    // rule regex the classifier compiles).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match log_format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry.with(layer).init(),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // SMTP sessions mostly wait (on the network, on the spool's fsync); parsing and
    // classification run on threads of their own, one per core. So the reactor gets
    // half the cores: on two, a second reactor thread mostly woke the first (one
    // context switch more per message at 32 sessions, 3-5% more CPU).
    // TOKIO_WORKER_THREADS still overrides.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        runtime.worker_threads((cores / 2).max(1));
    }
    let rt = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(bouncelens::server::serve(cfg))?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(config: Option<&Path>) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let rules = load_rules(cfg.rules.builtin, &cfg.rules.dirs)?;
    let warnings = bouncelens::server::check_config(&cfg)?;
    match config {
        Some(p) => println!("{}: ok", p.display()),
        None => println!("built-in defaults: ok"),
    }
    println!("rules: {} loaded", rules.len());
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every input file under `paths`, in order (directories recursively, sorted by name).
/// Directory entries' types come from the listing itself: no `stat` per file.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        collect_dir(path, out)
    } else {
        out.push(path.to_path_buf());
        Ok(())
    }
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<(std::ffi::OsString, PathBuf, bool)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| {
            let e = e.ok()?;
            let path = e.path();
            // A symlink (or a type the listing does not give) is followed, as before.
            let is_dir = match e.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_file() => false,
                _ => path.is_dir(),
            };
            Some((e.file_name(), path, is_dir))
        })
        .collect();
    // By name: the same order as sorting the paths (they differ only in their last
    // component), without comparing them component by component.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (_, path, is_dir) in entries {
        if is_dir {
            collect_dir(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads `path` into `buf` (cleared first), reusing its allocation. (Read through
/// `take`, which skips `File`'s size probe: two system calls per file that the
/// reused buffer does not need.)
fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    std::fs::File::open(path)?.take(u64::MAX).read_to_end(buf)?;
    Ok(())
}

fn classify_cmd(
    format: Format,
    lang: Lang,
    rule_dirs: &[PathBuf],
    paths: &[PathBuf],
) -> Result<ExitCode> {
    let rules = load_rules(true, rule_dirs)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut all_rows: Vec<Row> = Vec::new();
    let mut failed = false;
    let mut buf = Vec::new();
    let mut line = Vec::new();
    let mut emit = |rows: Vec<Row>, out: &mut BufWriter<io::StdoutLock<'_>>| -> Result<()> {
        match format {
            Format::Jsonl => {
                line.clear();
                for r in &rows {
                    bouncelens::json::write_row(r, &mut line);
                    line.push(b'\n');
                }
                out.write_all(&line)?;
            }
            Format::Text => {
                for r in &rows {
                    write_text_row(out, r)?;
                }
            }
            Format::Json => all_rows.extend(rows),
        }
        Ok(())
    };
    for p in paths {
        if p.as_os_str() == "-" {
            buf.clear();
            io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read standard input")?;
            emit(classify::analyze(&buf, &rules, lang, "-"), &mut out)?;
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(p, &mut files) {
            eprintln!("bouncelens: {e:#}");
            failed = true;
            continue;
        }
        for f in files {
            match read_into(&f, &mut buf) {
                Ok(()) => emit(
                    classify::analyze(&buf, &rules, lang, &f.display().to_string()),
                    &mut out,
                )?,
                Err(e) => {
                    eprintln!("bouncelens: cannot read {}: {e}", f.display());
                    failed = true;
                }
            }
        }
    }
    if let Format::Json = format {
        serde_json::to_writer_pretty(&mut out, &all_rows)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_text_row(out: &mut impl Write, r: &Row) -> io::Result<()> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "{} #{}  {}  {} {}  {}{}",
        r.source,
        r.message_index,
        dash(&r.recipient),
        dash(&r.status),
        r.reply_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        r.reason,
        match r.hard_bounce {
            Some(true) => "  [hard bounce]",
            _ => "",
        }
    )?;
    if let Some(c) = &r.cause {
        writeln!(out, "    {} (fix by: {})  [{}]", c.title, c.fix_by, c.id)?;
        writeln!(out, "    {}", c.advice)?;
    }
    if let Some(d) = &r.diagnostic {
        writeln!(out, "    diagnostic: {d}")?;
    }
    writeln!(out)
}

fn explain(status: &str, text: &str, lang: Lang, rule_dirs: &[PathBuf]) -> Result<ExitCode> {
    let rules = load_rules(true, rule_dirs)?;
    let code: StatusCode = status.parse()?;
    let reply_code = text
        .split_whitespace()
        .next()
        .and_then(|w| w.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c));
    let input = MatchInput {
        status: Some(code),
        reply_code,
        text,
        hosts: &[],
        recipient: None,
        command: None,
    };
    let cands = rules.candidates(&input);
    let mut out = io::stdout().lock();
    let Some(best) = cands.first() else {
        writeln!(out, "{code}: no rule matches")?;
        return Ok(ExitCode::from(1));
    };
    let r = best.rule;
    let t = r.text_for(lang);
    writeln!(
        out,
        "{code}  ->  {}  (reason: {}, fix by: {})",
        r.id, r.reason, r.fix_by
    )?;
    writeln!(out, "rule: {}", r.origin)?;
    writeln!(out, "\n{}\n\n{}", t.title, t.advice)?;
    for (i, s) in t.steps.iter().enumerate() {
        writeln!(out, "  {}. {s}", i + 1)?;
    }
    if let Some(u) = &r.reference {
        writeln!(out, "\nreference: {u}")?;
    }
    if cands.len() > 1 {
        writeln!(out, "\nalso matched (less specific):")?;
        for c in &cands[1..cands.len().min(6)] {
            writeln!(out, "  {}  ({})", c.rule.id, c.rule.origin)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
