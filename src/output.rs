//! How pic2 speaks: colours when on a terminal (and `NO_COLOR` unset), tables, JSON.

use crate::cli::Color;
use owo_colors::OwoColorize;
use std::io::IsTerminal;

pub struct Out {
    pub color: bool,
    pub json: bool,
    /// Whether what goes to standard error is coloured: decided for that stream, so that
    /// `pic2 apply 2>apply.log` on a terminal keeps its log plain.
    stderr_color: bool,
}

impl Out {
    pub fn new(color: Color, json: bool) -> Self {
        let on = |terminal: bool| match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
        };
        Out {
            color: on(std::io::stdout().is_terminal()),
            json,
            stderr_color: on(std::io::stderr().is_terminal()),
        }
    }

    /// The same, coloured as standard error allows: for what is printed there.
    pub fn on_stderr(&self) -> Out {
        Out {
            color: self.stderr_color,
            json: self.json,
            stderr_color: self.stderr_color,
        }
    }

    pub fn json(&self, value: &impl serde::Serialize) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot serialise the output: {e}"),
        }
    }

    pub fn green(&self, s: &str) -> String {
        if self.color {
            s.green().to_string()
        } else {
            s.to_string()
        }
    }
    pub fn yellow(&self, s: &str) -> String {
        if self.color {
            s.yellow().to_string()
        } else {
            s.to_string()
        }
    }
    pub fn red(&self, s: &str) -> String {
        if self.color {
            s.red().bold().to_string()
        } else {
            s.to_string()
        }
    }
    pub fn bold(&self, s: &str) -> String {
        if self.color {
            s.bold().to_string()
        } else {
            s.to_string()
        }
    }
    pub fn dim(&self, s: &str) -> String {
        if self.color {
            s.dimmed().to_string()
        } else {
            s.to_string()
        }
    }

    /// A plain table with a header row.
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        if !self.color {
            t.force_no_tty();
        }
        t.set_header(
            header
                .iter()
                .map(|h| comfy_table::Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
        );
        for row in rows {
            t.add_row(row);
        }
        for (i, col) in t.column_iter_mut().enumerate() {
            if i > 0 {
                col.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        t.to_string()
    }
}
