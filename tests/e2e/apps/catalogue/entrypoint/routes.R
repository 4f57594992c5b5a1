#* Shout the text back
#* @param text what to shout
#* @get /shout
function(text = "hello") {
  list(text = shout(text))
}
