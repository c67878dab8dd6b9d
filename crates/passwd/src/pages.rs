//! The pages, as maud templates (every interpolation is HTML-escaped). No inline script or
//! style: the Content-Security-Policy allows only this site's own files.

use crate::i18n::{Lang, Text};
use maud::{html, Markup, DOCTYPE};

/// What every page needs: the language and the anti-CSRF value for its forms.
pub struct Page<'a> {
    pub lang: Lang,
    pub csrf: &'a str,
    pub min_length: usize,
}

/// A message shown at the top of a form.
pub enum Notice {
    Error(Vec<String>),
    Info(String),
}

impl Page<'_> {
    fn t(&self) -> &'static Text {
        self.lang.t()
    }

    fn layout(&self, title: &str, body: Markup) -> Markup {
        let t = self.t();
        html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (title) " · " (t.title) }
                    link rel="stylesheet" href="/static/style.css";
                    script src="/static/strength.js" defer {}
                }
                body {
                    a.skip href="#main" { (t.skip) }
                    header {
                        a.brand href="/" {
                            span.logo aria-hidden="true" { "•••" }
                            (t.title)
                        }
                        nav aria-label=(t.switch_label) {
                            @for (lang, name) in [(Lang::Fr, "Français"), (Lang::En, "English")] {
                                @if lang == self.lang {
                                    span.current aria-current="true" lang=(lang.code()) { (name) }
                                } @else {
                                    a href={ "?lang=" (lang.code()) } lang=(lang.code()) hreflang=(lang.code()) { (name) }
                                }
                            }
                        }
                    }
                    main #main {
                        h1 { (title) }
                        (body)
                    }
                    footer { p { (t.footer) } }
                }
            }
        }
    }

    fn notice(&self, notice: Option<&Notice>) -> Markup {
        html! {
            @match notice {
                Some(Notice::Error(lines)) => {
                    div.notice.error role="alert" tabindex="-1" #notice {
                        @for l in lines { p { (l) } }
                    }
                }
                Some(Notice::Info(line)) => {
                    div.notice.info role="status" #notice { p { (line) } }
                }
                None => {}
            }
        }
    }

    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    fn policy(&self) -> Markup {
        let t = self.t();
        html! {
            section.policy aria-labelledby="policy-title" {
                h2 #policy-title { (t.policy_title) }
                ul {
                    li { (t.policy_min.replace("{n}", &self.min_length.to_string())) }
                    li { (t.policy_names) }
                    li { (t.policy_common) }
                    li { (t.policy_strong) }
                }
                p.tip { (t.policy_tip) }
                div.meter #strength hidden data-levels=(t.strength_levels.join("|")) {
                    label for="strength-meter" { (t.strength) " : " span #strength-label {} }
                    meter #strength-meter min="0" max="4" low="2" high="3" optimum="4" value="0" {}
                    ul #strength-reasons aria-live="polite" {}
                }
            }
        }
    }

    fn new_password_fields(&self) -> Markup {
        let t = self.t();
        html! {
            div.field {
                label for="new" { (t.new) }
                input #new type="password" name="new" required autocomplete="new-password"
                    minlength=(self.min_length) maxlength="256" aria-describedby="policy-title";
            }
            div.field {
                label for="again" { (t.again) }
                input #again type="password" name="again" required autocomplete="new-password" maxlength="256";
            }
        }
    }

    pub fn home(&self) -> Markup {
        let t = self.t();
        self.layout(t.title, html! {
            p.lead { (t.home_intro) }
            ul.cards {
                li { a href="/password" { strong { (t.change_title) } span { (t.change_card) } } }
                li { a href="/keys" { strong { (t.keys_title) } span { (t.keys_card) } } }
                li { a href="/forgot" { strong { (t.forgot_title) } span { (t.forgot_card) } } }
            }
        })
    }

    pub fn change(&self, account: &str, notice: Option<&Notice>) -> Markup {
        let t = self.t();
        self.layout(t.change_title, html! {
            (self.notice(notice))
            p { (t.change_intro) }
            form method="post" action="/password" #password-form {
                (self.csrf_field())
                div.field {
                    label for="account" { (t.account) }
                    input #account type="text" name="account" required autocomplete="username"
                        autocapitalize="none" spellcheck="false" maxlength="64" value=(account)
                        aria-describedby="account-hint";
                    p.hint #account-hint { (t.account_hint) }
                }
                div.field {
                    label for="current" { (t.current) }
                    input #current type="password" name="current" required autocomplete="current-password" maxlength="256";
                }
                (self.new_password_fields())
                (self.policy())
                button type="submit" { (t.submit_change) }
            }
            p.aside { a href="/forgot" { (t.forgot_title) } }
        })
    }

    pub fn changed(&self) -> Markup {
        let t = self.t();
        self.layout(
            t.changed_title,
            html! {
                div.notice.success role="status" { p { (t.changed_body) } }
                p { a href="/" { (t.back_home) } }
            },
        )
    }

    pub fn forgot(&self, notice: Option<&Notice>) -> Markup {
        let t = self.t();
        self.layout(
            t.forgot_title,
            html! {
                (self.notice(notice))
                p { (t.forgot_intro) }
                form method="post" action="/forgot" {
                    (self.csrf_field())
                    div.field {
                        label for="account" { (t.account) }
                        input #account type="text" name="account" required autocomplete="username"
                            autocapitalize="none" spellcheck="false" maxlength="64";
                    }
                    button type="submit" { (t.submit_forgot) }
                }
            },
        )
    }

    pub fn sent(&self) -> Markup {
        let t = self.t();
        self.layout(
            t.sent_title,
            html! {
                div.notice.info role="status" { p { (t.sent_body) } }
                p { a href="/" { (t.back_home) } }
            },
        )
    }

    pub fn reset(&self, account: &str, notice: Option<&Notice>) -> Markup {
        let t = self.t();
        self.layout(t.reset_title, html! {
            (self.notice(notice))
            p { (t.reset_intro) " " strong #account-name data-account=(account) { (account) } "." }
            form method="post" action="/reset" #password-form {
                (self.csrf_field())
                input type="text" name="account" value=(account) autocomplete="username" hidden readonly;
                (self.new_password_fields())
                (self.policy())
                button type="submit" { (t.submit_reset) }
            }
        })
    }

    pub fn reset_invalid(&self) -> Markup {
        let t = self.t();
        self.layout(
            t.reset_invalid_title,
            html! {
                div.notice.error role="alert" { p { (t.reset_invalid_body) } }
                p { a.button href="/forgot" { (t.forgot_title) } }
            },
        )
    }

    pub fn reset_done(&self) -> Markup {
        let t = self.t();
        self.layout(
            t.changed_title,
            html! {
                div.notice.success role="status" { p { (t.reset_done_body) } }
                p { a href="/" { (t.back_home) } }
            },
        )
    }

    pub fn keys_signin(&self, account: &str, notice: Option<&Notice>) -> Markup {
        let t = self.t();
        self.layout(t.keys_title, html! {
            (self.notice(notice))
            p { (t.keys_signin_intro) }
            form method="post" action="/keys/signin" {
                (self.csrf_field())
                div.field {
                    label for="account" { (t.account) }
                    input #account type="text" name="account" required autocomplete="username"
                        autocapitalize="none" spellcheck="false" maxlength="64" value=(account);
                }
                div.field {
                    label for="password" { (t.current) }
                    input #password type="password" name="password" required autocomplete="current-password" maxlength="256";
                }
                button type="submit" { (t.submit_signin) }
            }
        })
    }

    pub fn keys(
        &self,
        account: &str,
        keys: &[KeyView],
        notice: Option<&Notice>,
        draft: &str,
    ) -> Markup {
        let t = self.t();
        self.layout(t.keys_title, html! {
            (self.notice(notice))
            div.whoami {
                p { (t.signed_in_as) " " strong { (account) } }
                form method="post" action="/keys/signout" {
                    (self.csrf_field())
                    button.link type="submit" { (t.sign_out) }
                }
            }
            p { (t.keys_intro) }
            @if keys.is_empty() {
                p.empty { (t.keys_none) }
            } @else {
                ul.keys {
                    @for k in keys {
                        li {
                            div.key {
                                span.type { (k.algorithm) }
                                strong.comment { (k.comment) }
                                code.fp title=(t.key_fingerprint) { (k.fingerprint) }
                            }
                            form method="post" action="/keys/remove" {
                                (self.csrf_field())
                                input type="hidden" name="key" value=(k.line);
                                button.danger type="submit" aria-label={ (t.key_remove) " " (k.comment) } { (t.key_remove) }
                            }
                        }
                    }
                }
            }
            h2 { (t.key_add_title) }
            form method="post" action="/keys/add" {
                (self.csrf_field())
                div.field {
                    label for="key" { (t.key_add_label) }
                    textarea #key name="key" rows="4" required spellcheck="false" maxlength="16384"
                        aria-describedby="key-hint" { (draft) }
                    p.hint #key-hint { (t.key_add_hint) }
                }
                button type="submit" { (t.key_add) }
            }
        })
    }

    pub fn message(&self, title: &str, body: &str) -> Markup {
        let t = self.t();
        self.layout(
            title,
            html! {
                div.notice.error role="alert" { p { (body) } }
                p { a href="/" { (t.back_home) } }
            },
        )
    }
}

/// One SSH key as listed.
pub struct KeyView {
    pub algorithm: String,
    pub comment: String,
    pub fingerprint: String,
    /// The value as stored, to remove it.
    pub line: String,
}
