# A small site: static files next to an API.

#* @assets ./public /static
list()

#* @get /hello
function() {
  list(message = "the page at /static/index.html calls me")
}
