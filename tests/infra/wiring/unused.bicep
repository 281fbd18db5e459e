// Broken on purpose: a parameter and a variable nobody reads (no-unused-params, no-unused-vars).
param unused string
param used string = 'x'

var forgotten = 'y'

output value string = used
