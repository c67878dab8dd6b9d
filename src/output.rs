//! How pic2 speaks: colours when on a terminal (and `NO_COLOR` unset), tables, JSON.

use crate::cli::Color;
use owo_colors::OwoColorize;
use std::io::IsTerminal;

pub struct Out {
    pub color: bool,
    pub json: bool,
}

impl Out {
    pub fn new(color: Color, json: bool) -> Self {
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Out { color, json }
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
