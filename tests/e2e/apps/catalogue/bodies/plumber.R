# Request bodies: JSON, HTML forms and file uploads.

#* Add two numbers sent as JSON or as a form
#* @post /sum
function(a, b) {
  list(sum = as.numeric(a) + as.numeric(b))
}

#* Echo a JSON body back
#* @post /echo
function(req) {
  req$body
}

#* A form: name and age
#* @post /form
function(req, name, age) {
  list(name = name, age = as.integer(age), content_type = req$CONTENT_TYPE)
}

#* Upload a file (multipart/form-data)
#* @param upload:file
#* @post /upload
function(upload) {
  list(filename = names(upload)[[1]], bytes = length(upload[[1]]))
}
