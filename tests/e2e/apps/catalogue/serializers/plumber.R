# Plots and tables in the formats plumber's documentation lists.

#* Speed against stopping distance, as a PNG
#* @serializer png list(width = 480, height = 360)
#* @get /plot.png
function() {
  plot(cars, main = "Stopping distance")
}

#* A histogram, as a JPEG
#* @serializer jpeg
#* @get /hist.jpg
function(n = 100) {
  hist(rnorm(as.integer(n)), main = "Normal sample")
}

#* The same plot as SVG
#* @serializer svg
#* @get /plot.svg
function() {
  plot(1:10, main = "Ten points")
}

#* A PNG drawn by ragg
#* @serializer agg_png
#* @get /agg.png
function() {
  plot(pressure)
}

#* The first rows of mtcars as CSV
#* @serializer csv
#* @get /mtcars.csv
function(n = 5) {
  head(mtcars, as.integer(n))
}

#* YAML
#* @serializer yaml
#* @get /config.yaml
function() {
  list(name = "serializers", versions = list(R = as.character(getRversion())))
}

#* An HTML page
#* @serializer html
#* @get /page
function() {
  "<!DOCTYPE html><html><body><h1>Hello from plumber</h1></body></html>"
}

#* SVG drawn by svglite
#* @serializer svglite
#* @get /svglite.svg
function() {
  plot(women)
}
