# An example Plumber API: health check, greeting, worker identity, echo.

#* @apiTitle Hello
#* @apiDescription A small API deployed by plumber-hosting.

#* Liveness and readiness: 200 when the worker can serve.
#* @get /health
#* @serializer unboxedJSON
function() {
  list(status = "ok", app = Sys.getenv("PLUMBER_APP"))
}

#* Greet someone.
#* @param name Who to greet.
#* @get /hello
#* @serializer unboxedJSON
function(name = "world") {
  list(message = paste0("Hello, ", name, "!"))
}

#* Which worker answered (its process id and port), and the release it runs.
#* @get /pid
#* @serializer unboxedJSON
function() {
  list(
    pid = Sys.getpid(),
    port = as.integer(Sys.getenv("PORT")),
    release = basename(getwd()),
    greeting = Sys.getenv("GREETING", "hi")
  )
}

#* The request as the API sees it behind nginx.
#* @get /whoami
#* @serializer unboxedJSON
function(req) {
  list(
    path = req$PATH_INFO,
    host = req$HTTP_HOST,
    forwarded_for = if (is.null(req$HTTP_X_FORWARDED_FOR)) "" else req$HTTP_X_FORWARDED_FOR,
    forwarded_proto = if (is.null(req$HTTP_X_FORWARDED_PROTO)) "" else req$HTTP_X_FORWARDED_PROTO,
    forwarded_prefix = if (is.null(req$HTTP_X_FORWARDED_PREFIX)) "" else req$HTTP_X_FORWARDED_PREFIX
  )
}

#* Echo a JSON body back.
#* @post /echo
#* @serializer unboxedJSON
function(req) {
  list(received = nchar(req$postBody))
}

#* Slow on purpose (I/O-bound work stand-in).
#* @param ms Milliseconds to sleep.
#* @get /sleep
#* @serializer unboxedJSON
function(ms = 50) {
  Sys.sleep(as.numeric(ms) / 1000)
  list(slept_ms = as.numeric(ms))
}
