//! Error reports for people: inventory diagnostics with the source underlined (miette), and
//! system errors with what to do.

use crate::output::Out;
use miette::{LabeledSpan, MietteDiagnostic, NamedSource, Report};
use pic2_inventory::Diagnostics;

/// Prints every diagnostic of an inventory.
pub fn diagnostics(out: &Out, d: &Diagnostics) {
    if out.json {
        out.json(&serde_json::json!({ "valid": false, "diagnostics": d.located() }));
        return;
    }
    let out = &out.on_stderr();
    let source = NamedSource::new(
        d.file.path().display().to_string(),
        d.file.text().to_string(),
    )
    .with_language("TOML");
    for (diag, located) in d.diagnostics.iter().zip(d.located()) {
        let mut m = MietteDiagnostic::new(format!(
            "{}:{}:{}: {}",
            located.path, located.line, located.column, diag.message
        ))
        .with_code(diag.code.as_str())
        .with_label(LabeledSpan::new_primary_with_span(
            Some(diag.label.clone()).filter(|l| !l.is_empty()),
            diag.span.start..diag.span.end.max(diag.span.start),
        ));
        for r in &diag.related {
            m = m.and_label(LabeledSpan::new_with_span(
                Some(r.label.clone()),
                r.span.start..r.span.end,
            ));
        }
        if let Some(h) = &diag.hint {
            m = m.with_help(h.clone());
        }
        let report = Report::new(m).with_source_code(source.clone());
        if out.color {
            eprintln!("{report:?}");
        } else {
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            let mut s = String::new();
            let _ = handler.render_report(&mut s, report.as_ref());
            eprintln!("{s}");
        }
    }
    eprintln!(
        "{}",
        out.red(&format!(
            "{} error(s) in {}; nothing was changed.",
            d.diagnostics.len(),
            d.file.path().display()
        ))
    );
}

/// An error, its causes and its hint, for machines.
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    serde_json::json!({ "error": chain.first(), "causes": chain.get(1..), "hint": hint_of(e) })
}

/// Prints an error and its causes, with a hint when there is one.
pub fn error(out: &Out, e: &anyhow::Error) {
    if out.json {
        out.json(&error_json(e));
        return;
    }
    let out = &out.on_stderr();
    eprintln!("{} {e}", out.red("error:"));
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(h) = hint_of(e) {
        eprintln!("  {} {h}", out.bold("hint:"));
    }
}

fn hint_of(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .find_map(|c| c.downcast_ref::<pic2_systems::Error>())
        .and_then(|e| e.hint())
}
