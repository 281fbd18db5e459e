// Broken on purpose: each line marked below is a mistake `az bicep build` would reject, and
// tests/test_infra.py's wiring check must find each one.
module store 'modules/store.bicep' = {
  name: 'store'
  params: {
    // `name` is required and not passed.
    location: 'westeurope'
    size: 3 // not a parameter of store.bicep
  }
}

output storeId string = store.outputs.id
output storeKey string = store.outputs.key // store.bicep has no output `key`
