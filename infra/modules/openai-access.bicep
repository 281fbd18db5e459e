// Keyless access to an Azure OpenAI account, new or existing: each principal gets the
// "Cognitive Services OpenAI User" role (call models, nothing else) on that one account.
// Deployed into the account's resource group.

@description('Name of the Azure OpenAI account in this resource group.')
param accountName string

@description('Principals to grant: [{ id, type }] with type ServicePrincipal, User or Group.')
param principals array

// Cognitive Services OpenAI User
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principal in principals: {
    name: guid(account.id, principal.id, openAiUserRoleId)
    scope: account
    properties: {
      principalId: principal.id
      principalType: principal.type
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    }
  }
]

output endpoint string = account.properties.endpoint
