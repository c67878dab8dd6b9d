//! French and English: the language comes from the `lang` cookie (set by the switch in every
//! page), else from `Accept-Language`, else French (the host's users are French associations).

use crate::policy::Reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().get(..2).map(str::to_ascii_lowercase).as_deref() {
            Some("fr") => Some(Lang::Fr),
            Some("en") => Some(Lang::En),
            _ => None,
        }
    }

    /// The first of our languages in an `Accept-Language` header, by quality.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut fields = part.split(';');
            let Some(lang) = fields.next().and_then(Lang::parse) else {
                continue;
            };
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    pub fn t(self) -> &'static Text {
        match self {
            Lang::Fr => &FR,
            Lang::En => &EN,
        }
    }

    pub fn reason(self, r: Reason) -> String {
        let t = self.t();
        match r {
            Reason::TooShort(n) => t.too_short.replace("{n}", &n.to_string()),
            Reason::TooLong => t.too_long.to_string(),
            Reason::ContainsAccount => t.contains_account.to_string(),
            Reason::ContainsName => t.contains_name.to_string(),
            Reason::Common => t.common.to_string(),
            Reason::Weak => t.weak.to_string(),
            Reason::Mismatch => t.mismatch.to_string(),
        }
    }
}

/// Every text of the interface, in one language.
pub struct Text {
    pub title: &'static str,
    pub skip: &'static str,
    pub switch_label: &'static str,
    pub home_intro: &'static str,
    pub change_title: &'static str,
    pub change_intro: &'static str,
    pub change_card: &'static str,
    pub keys_title: &'static str,
    pub keys_card: &'static str,
    pub forgot_title: &'static str,
    pub forgot_card: &'static str,
    pub forgot_intro: &'static str,
    pub account: &'static str,
    pub account_hint: &'static str,
    pub current: &'static str,
    pub new: &'static str,
    pub again: &'static str,
    pub show: &'static str,
    pub submit_change: &'static str,
    pub submit_forgot: &'static str,
    pub submit_reset: &'static str,
    pub submit_signin: &'static str,
    pub policy_title: &'static str,
    pub policy_min: &'static str,
    pub policy_names: &'static str,
    pub policy_common: &'static str,
    pub policy_strong: &'static str,
    pub policy_tip: &'static str,
    pub strength: &'static str,
    pub strength_levels: [&'static str; 5],
    pub too_short: &'static str,
    pub too_long: &'static str,
    pub contains_account: &'static str,
    pub contains_name: &'static str,
    pub common: &'static str,
    pub weak: &'static str,
    pub mismatch: &'static str,
    pub refused_title: &'static str,
    pub bad_credentials: &'static str,
    pub changed_title: &'static str,
    pub changed_body: &'static str,
    pub sent_title: &'static str,
    pub sent_body: &'static str,
    pub reset_title: &'static str,
    pub reset_intro: &'static str,
    pub reset_invalid_title: &'static str,
    pub reset_invalid_body: &'static str,
    pub reset_done_body: &'static str,
    pub keys_intro: &'static str,
    pub keys_signin_intro: &'static str,
    pub keys_none: &'static str,
    pub key_type: &'static str,
    pub key_comment: &'static str,
    pub key_fingerprint: &'static str,
    pub key_remove: &'static str,
    pub key_add_title: &'static str,
    pub key_add_label: &'static str,
    pub key_add_hint: &'static str,
    pub key_add: &'static str,
    pub key_added: &'static str,
    pub key_removed: &'static str,
    pub key_duplicate: &'static str,
    pub key_invalid: &'static str,
    pub key_dsa: &'static str,
    pub key_rsa_short: &'static str,
    pub sign_out: &'static str,
    pub signed_in_as: &'static str,
    pub session_expired: &'static str,
    pub throttled_title: &'static str,
    pub throttled_body: &'static str,
    pub error_title: &'static str,
    pub error_body: &'static str,
    pub csrf_body: &'static str,
    pub not_found: &'static str,
    pub back_home: &'static str,
    pub footer: &'static str,
    pub mail_changed_subject: &'static str,
    pub mail_changed_body: &'static str,
    pub mail_reset_subject: &'static str,
    pub mail_reset_body: &'static str,
}

pub static FR: Text = Text {
    title: "Mot de passe et clés SSH",
    skip: "Aller au contenu",
    switch_label: "Langue",
    home_intro: "Gérez ici l'accès à votre compte d'hébergement : le mot de passe qui ouvre SFTP, SSH et les services web, et vos clés SSH.",
    change_title: "Changer mon mot de passe",
    change_intro: "Saisissez votre mot de passe actuel, puis le nouveau deux fois.",
    change_card: "Vous connaissez votre mot de passe et voulez en choisir un autre.",
    keys_title: "Mes clés SSH",
    keys_card: "Ajoutez ou retirez les clés publiques qui ouvrent SSH et SFTP sans mot de passe.",
    forgot_title: "Mot de passe oublié",
    forgot_card: "Recevez par courriel un lien pour en choisir un nouveau.",
    forgot_intro: "Indiquez le nom de votre compte : un lien valable 30 minutes sera envoyé à l'adresse enregistrée pour ce compte.",
    account: "Nom du compte",
    account_hint: "Celui que vous utilisez pour SFTP, par exemple « velobs ».",
    current: "Mot de passe actuel",
    new: "Nouveau mot de passe",
    again: "Nouveau mot de passe, encore",
    show: "Afficher",
    submit_change: "Changer le mot de passe",
    submit_forgot: "Envoyer le lien",
    submit_reset: "Enregistrer le mot de passe",
    submit_signin: "Se connecter",
    policy_title: "Un bon mot de passe",
    policy_min: "compte au moins {n} caractères ;",
    policy_names: "ne contient ni le nom du compte ni votre nom ;",
    policy_common: "n'est pas un mot de passe courant ;",
    policy_strong: "est difficile à deviner.",
    policy_tip: "Astuce : une phrase de quatre ou cinq mots sans rapport entre eux est facile à retenir et difficile à deviner.",
    strength: "Solidité",
    strength_levels: ["très faible", "faible", "moyenne", "bonne", "excellente"],
    too_short: "Le mot de passe doit compter au moins {n} caractères.",
    too_long: "Le mot de passe est trop long (256 caractères au plus).",
    contains_account: "Le mot de passe ne doit pas contenir le nom du compte.",
    contains_name: "Le mot de passe ne doit pas contenir votre nom.",
    common: "Ce mot de passe est dans la liste des mots de passe les plus courants.",
    weak: "Ce mot de passe est trop facile à deviner : allongez-le ou ajoutez des mots.",
    mismatch: "Les deux nouveaux mots de passe sont différents.",
    refused_title: "Le mot de passe n'a pas été changé",
    bad_credentials: "Nom de compte ou mot de passe incorrect.",
    changed_title: "Mot de passe changé",
    changed_body: "Votre nouveau mot de passe est actif dès maintenant pour SFTP, SSH et les services web. Un courriel de confirmation vous a été envoyé.",
    sent_title: "Vérifiez votre messagerie",
    sent_body: "Si ce compte existe et a une adresse enregistrée, un lien vient d'y être envoyé. Il ne sert qu'une fois et expire dans 30 minutes. Rien reçu ? Regardez dans les indésirables, ou écrivez aux administrateurs.",
    reset_title: "Choisir un nouveau mot de passe",
    reset_intro: "Choisissez le nouveau mot de passe du compte",
    reset_invalid_title: "Ce lien ne fonctionne plus",
    reset_invalid_body: "Il a déjà servi, ou il a plus de 30 minutes. Demandez-en un nouveau.",
    reset_done_body: "Votre nouveau mot de passe est enregistré. Le lien ne servira plus.",
    keys_intro: "Ces clés publiques ouvrent SSH et SFTP à votre compte. Retirez celles que vous n'utilisez plus.",
    keys_signin_intro: "Connectez-vous avec votre compte pour voir et modifier vos clés. La session se ferme après 10 minutes sans activité.",
    keys_none: "Aucune clé pour l'instant.",
    key_type: "Type",
    key_comment: "Commentaire",
    key_fingerprint: "Empreinte",
    key_remove: "Retirer",
    key_add_title: "Ajouter une clé",
    key_add_label: "Clé publique",
    key_add_hint: "Collez une ligne de votre fichier ~/.ssh/id_ed25519.pub (ed25519, ecdsa, ou RSA d'au moins 3072 bits).",
    key_add: "Ajouter la clé",
    key_added: "Clé ajoutée.",
    key_removed: "Clé retirée.",
    key_duplicate: "Cette clé est déjà enregistrée.",
    key_invalid: "Ce n'est pas une clé publique SSH valide.",
    key_dsa: "Les clés DSA sont obsolètes et refusées par OpenSSH.",
    key_rsa_short: "Les clés RSA doivent compter au moins 3072 bits.",
    sign_out: "Se déconnecter",
    signed_in_as: "Connecté en tant que",
    session_expired: "Votre session a expiré : reconnectez-vous.",
    throttled_title: "Trop de tentatives",
    throttled_body: "Par sécurité, attendez {s} secondes avant de réessayer.",
    error_title: "Une erreur est survenue",
    error_body: "Le service est momentanément indisponible. Réessayez dans quelques minutes ; si cela continue, prévenez les administrateurs.",
    csrf_body: "Le formulaire a expiré ou ne vient pas de ce site. Rechargez la page et recommencez.",
    not_found: "Cette page n'existe pas.",
    back_home: "Retour à l'accueil",
    footer: "Votre mot de passe n'est jamais enregistré en clair ni écrit dans les journaux.",
    mail_changed_subject: "Votre mot de passe a été changé",
    mail_changed_body: "Bonjour,\n\nle mot de passe du compte « {account} » ({platform}) vient d'être changé, depuis l'adresse {address}.\n\nSi ce n'est pas vous, demandez un nouveau mot de passe ici et prévenez les administrateurs :\n{url}/forgot\n",
    mail_reset_subject: "Choisir un nouveau mot de passe",
    mail_reset_body: "Bonjour,\n\nquelqu'un (vous, sans doute) a demandé un nouveau mot de passe pour le compte « {account} » ({platform}).\n\nPour le choisir, ouvrez ce lien dans les 30 minutes ; il ne sert qu'une fois :\n{link}\n\nSi ce n'est pas vous, ignorez ce message : votre mot de passe actuel reste valable.\n",
};

pub static EN: Text = Text {
    title: "Password and SSH keys",
    skip: "Skip to content",
    switch_label: "Language",
    home_intro: "Manage the access to your hosting account here: the password for SFTP, SSH and the web services, and your SSH keys.",
    change_title: "Change my password",
    change_intro: "Type your current password, then the new one twice.",
    change_card: "You know your password and want to choose another one.",
    keys_title: "My SSH keys",
    keys_card: "Add or remove the public keys that open SSH and SFTP without a password.",
    forgot_title: "Forgotten password",
    forgot_card: "Get a link by e-mail to choose a new one.",
    forgot_intro: "Type your account name: a link valid for 30 minutes will be sent to the address on record for it.",
    account: "Account name",
    account_hint: "The one you use for SFTP, for example “velobs”.",
    current: "Current password",
    new: "New password",
    again: "New password, again",
    show: "Show",
    submit_change: "Change the password",
    submit_forgot: "Send the link",
    submit_reset: "Save the password",
    submit_signin: "Sign in",
    policy_title: "A good password",
    policy_min: "has at least {n} characters;",
    policy_names: "contains neither the account name nor your name;",
    policy_common: "is not a common password;",
    policy_strong: "is hard to guess.",
    policy_tip: "Tip: a sentence of four or five unrelated words is easy to remember and hard to guess.",
    strength: "Strength",
    strength_levels: ["very weak", "weak", "fair", "good", "excellent"],
    too_short: "The password must have at least {n} characters.",
    too_long: "The password is too long (256 characters at most).",
    contains_account: "The password must not contain the account name.",
    contains_name: "The password must not contain your name.",
    common: "This password is in the list of the most common passwords.",
    weak: "This password is too easy to guess: make it longer or add words.",
    mismatch: "The two new passwords differ.",
    refused_title: "The password was not changed",
    bad_credentials: "Wrong account name or password.",
    changed_title: "Password changed",
    changed_body: "Your new password works now for SFTP, SSH and the web services. A confirmation e-mail was sent to you.",
    sent_title: "Check your mailbox",
    sent_body: "If this account exists and has an address on record, a link was just sent to it. It works once and expires in 30 minutes. Nothing came? Look in the spam folder, or write to the administrators.",
    reset_title: "Choose a new password",
    reset_intro: "Choose the new password of the account",
    reset_invalid_title: "This link no longer works",
    reset_invalid_body: "It was already used, or it is more than 30 minutes old. Ask for a new one.",
    reset_done_body: "Your new password is saved. The link will not work again.",
    keys_intro: "These public keys open SSH and SFTP to your account. Remove the ones you no longer use.",
    keys_signin_intro: "Sign in with your account to see and change your keys. The session closes after 10 minutes without activity.",
    keys_none: "No key yet.",
    key_type: "Type",
    key_comment: "Comment",
    key_fingerprint: "Fingerprint",
    key_remove: "Remove",
    key_add_title: "Add a key",
    key_add_label: "Public key",
    key_add_hint: "Paste one line of your ~/.ssh/id_ed25519.pub file (ed25519, ecdsa, or RSA of at least 3072 bits).",
    key_add: "Add the key",
    key_added: "Key added.",
    key_removed: "Key removed.",
    key_duplicate: "This key is already there.",
    key_invalid: "This is not a valid SSH public key.",
    key_dsa: "DSA keys are obsolete and refused by OpenSSH.",
    key_rsa_short: "RSA keys need at least 3072 bits.",
    sign_out: "Sign out",
    signed_in_as: "Signed in as",
    session_expired: "Your session expired: please sign in again.",
    throttled_title: "Too many attempts",
    throttled_body: "For safety, wait {s} seconds before trying again.",
    error_title: "Something went wrong",
    error_body: "The service is unavailable for a moment. Try again in a few minutes; if it goes on, tell the administrators.",
    csrf_body: "The form expired or does not come from this site. Reload the page and try again.",
    not_found: "This page does not exist.",
    back_home: "Back to the start page",
    footer: "Your password is never stored in clear text nor written to logs.",
    mail_changed_subject: "Your password was changed",
    mail_changed_body: "Hello,\n\nthe password of the account “{account}” ({platform}) was just changed, from the address {address}.\n\nIf it was not you, ask for a new password here and tell the administrators:\n{url}/forgot\n",
    mail_reset_subject: "Choose a new password",
    mail_reset_body: "Hello,\n\nsomeone (you, most likely) asked for a new password for the account “{account}” ({platform}).\n\nTo choose it, open this link within 30 minutes; it works once:\n{link}\n\nIf it was not you, ignore this message: your current password still works.\n",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,fr;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("de,fr;q=0.5,en;q=0.4"),
            Some(Lang::Fr)
        );
        assert_eq!(Lang::from_accept_language("de"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }
}
