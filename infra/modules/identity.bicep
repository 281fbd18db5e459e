// A user-assigned managed identity; main.bicep makes two:
//   - id-web-<token>, the one Brook runs as (AZURE_CLIENT_ID): it calls Azure OpenAI ("Cognitive
//     Services OpenAI User"), sends telemetry, reads the Key Vault's secrets, and signs in to
//     PostgreSQL as a role of its own name that owns Brook's tables and nothing else;
//   - id-db-<token>, the PostgreSQL Microsoft Entra administrator that `brook db setup` signs in
//     as to create that role and the database (docs/deploy.md, "Who can do what in the database").

@description('Name of the identity; also the name of its PostgreSQL role.')
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
