# Errors the API's own way: a custom error handler and 404 page.

#* @plumber
function(pr) {
  pr %>%
    pr_set_error(function(req, res, err) {
      res$status <- 500
      list(error = "custom handler", message = conditionMessage(err))
    }) %>%
    pr_set_404(function(req, res) {
      res$status <- 404
      list(error = "no such endpoint", path = req$PATH_INFO)
    })
}

#* Fails
#* @get /boom
function() {
  stop("kaboom")
}

#* A status of the endpoint's choosing
#* @get /teapot
function(res) {
  res$status <- 418
  list(error = "I'm a teapot")
}
