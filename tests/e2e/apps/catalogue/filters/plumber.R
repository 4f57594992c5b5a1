# Filters: a logger for every request, and a token check that one endpoint skips.

#* Log each request
#* @filter logger
function(req) {
  message(req$REQUEST_METHOD, " ", req$PATH_INFO)
  forward()
}

#* Require the X-Token header
#* @filter auth
function(req, res) {
  if (!identical(req$HTTP_X_TOKEN, "let-me-in")) {
    res$status <- 401
    return(list(error = "send X-Token"))
  }
  forward()
}

#* Needs the token
#* @get /secret
function() {
  list(secret = 42)
}

#* Open to all: the auth filter does not run
#* @preempt auth
#* @get /public
function() {
  list(public = TRUE)
}
