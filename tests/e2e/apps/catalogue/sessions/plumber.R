# Cookies: a plain one, and an encrypted session cookie (pr_cookie).

#* @plumber
function(pr) {
  pr %>%
    pr_cookie(Sys.getenv("COOKIE_KEY"), name = "session")
}

#* Count this client's visits in its session
#* @get /visits
function(req) {
  visits <- if (is.null(req$session$visits)) 0 else req$session$visits
  req$session$visits <- visits + 1
  list(visits = req$session$visits)
}

#* Remember a name in a plain cookie
#* @get /remember
function(res, name = "anonymous") {
  res$setCookie("name", name)
  list(remembered = name)
}

#* Who the cookie says this is
#* @get /whoami
function(req) {
  list(name = if (is.null(req$cookies$name)) "nobody" else req$cookies$name)
}
