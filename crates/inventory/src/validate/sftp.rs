//! The SFTP/SSH container needs a read-only service DN to look accounts and keys up.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let Some(listen) = inv.containers.as_ref().and_then(|c| c.sftp_listen.as_ref()) else {
        return;
    };
    let dir = &inv.directory;
    if dir.service_dn.is_none() || dir.service_password_file.is_none() {
        out.push(
            Diagnostic::new(Code::MissingKey, listen.span, "the SFTP/SSH container needs [directory] service_dn and service_password_file")
                .label("SFTP/SSH enabled here")
                .hint("add a read-only DN (it reads accounts, groups and keys, never a password) and the file holding its password"),
        );
    }
}
