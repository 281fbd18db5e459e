// The web app's user-assigned managed identity. Brook signs in with it everywhere (keyless):
// to Azure OpenAI (role "Cognitive Services OpenAI User") and to PostgreSQL (an Entra
// administrator whose role name is this identity's name). The app finds it by AZURE_CLIENT_ID.

@description('Name of the identity; also the PostgreSQL role Brook signs in as.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
