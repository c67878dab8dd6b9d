//! The proxy's own pages, in French and English: unknown site, backend down, maintenance.

const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}p{line-height:1.5}";

fn page(title_fr: &str, title_en: &str, fr: &str, en: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title_fr} — {title_en}</title><style>{STYLE}</style></head>\n<body><h1>{title_fr}</h1><p>{fr}</p><h1 lang=\"en\">{title_en}</h1><p lang=\"en\">{en}</p></body></html>\n"
    )
}

pub fn not_found() -> String {
    page(
        "Site inconnu",
        "Unknown site",
        "Aucun site n’est hébergé sous ce nom ici. Vérifiez l’adresse.",
        "No site is hosted under this name here. Please check the address.",
    )
}

pub fn misdirected() -> String {
    page(
        "Mauvaise connexion",
        "Misdirected request",
        "Cette connexion sécurisée a été ouverte pour un autre site. Rechargez la page.",
        "This secure connection was opened for another site. Please reload the page.",
    )
}

pub fn bad_gateway() -> String {
    page(
        "Site momentanément indisponible",
        "Site temporarily unavailable",
        "Le serveur de ce site ne répond pas. Réessayez dans quelques minutes.",
        "This site’s server is not answering. Please try again in a few minutes.",
    )
}

pub fn gateway_timeout() -> String {
    page(
        "Le site met trop de temps à répondre",
        "The site took too long to answer",
        "Le serveur de ce site n’a pas répondu à temps. Réessayez plus tard.",
        "This site’s server did not answer in time. Please try again later.",
    )
}

pub fn request_timeout() -> String {
    page(
        "Envoi interrompu",
        "Upload stopped",
        "Votre navigateur a cessé d’envoyer les données du formulaire ou du fichier. Vérifiez votre connexion et réessayez.",
        "Your browser stopped sending the form’s or the file’s data. Please check your connection and try again.",
    )
}

pub fn busy() -> String {
    page(
        "Serveur surchargé",
        "Server busy",
        "Trop de connexions sont ouvertes en ce moment. Réessayez dans un instant.",
        "Too many connections are open right now. Please try again in a moment.",
    )
}

pub fn maintenance() -> String {
    page(
        "Site en maintenance",
        "Site under maintenance",
        "Ce site est en cours de maintenance et revient très bientôt. Merci de votre patience.",
        "This site is being maintained and will be back very soon. Thank you for your patience.",
    )
}

pub fn bad_request() -> String {
    page(
        "Requête invalide",
        "Bad request",
        "Le serveur n’a pas compris cette requête.",
        "The server could not understand this request.",
    )
}

pub fn not_a_tunnel() -> String {
    page(
        "Méthode non permise",
        "Method not allowed",
        "Ce serveur héberge des sites ; il ne relaie pas de connexions (CONNECT).",
        "This server hosts sites; it does not relay connections (CONNECT).",
    )
}

pub fn header_too_large() -> String {
    page(
        "En-têtes de requête trop volumineux",
        "Request headers too large",
        "Votre navigateur a envoyé trop de données avec cette requête, souvent des cookies accumulés. Effacez les cookies de ce site puis réessayez.",
        "Your browser sent too much data with this request, often piled-up cookies. Clear this site’s cookies and try again.",
    )
}

pub fn uri_too_long() -> String {
    page(
        "Adresse trop longue",
        "Address too long",
        "L’adresse demandée (URL) est plus longue que ce serveur n’accepte. Vérifiez le lien que vous avez suivi.",
        "The address asked for (URL) is longer than this server accepts. Check the link you followed.",
    )
}

pub fn too_large() -> String {
    page(
        "Envoi trop volumineux",
        "Upload too large",
        "Le contenu envoyé dépasse la taille permise pour ce site.",
        "What was sent is larger than this site accepts.",
    )
}
