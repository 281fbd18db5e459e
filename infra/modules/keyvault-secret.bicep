// One secret in the Key Vault of keyvault.bicep that only some deployments have, or whose value
// is known only once another module is done: the password-mode DATABASE_URL (it needs the
// server's name), the OIDC client secret. A module of its own, so that the vault, and the
// modules that need only the vault (Redis), wait for neither.

@description('Key Vault in this resource group.')
param vaultName string

@description('Secret name: letters, digits and hyphens.')
param name string

@secure()
@description('The secret.')
param value string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: name
  properties: {
    value: value
    contentType: 'text/plain'
  }
}

// The unversioned URI: a reference to it follows the latest version.
output uri string = secret.properties.secretUri
