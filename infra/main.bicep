// Brook on Azure, provisioned by `azd up` (see docs/deploy.md): a resource group holding
//   - App Service (Linux, Python) running Brook with gunicorn + gevent, free tier F1 or B1 and up
//   - PostgreSQL Flexible Server, public behind firewall rules or private in a VNet
//   - Azure OpenAI with a chat deployment and those of the models people may pick (MODELS), or an
//     existing account with its deployments; key auth off
//   - two user-assigned managed identities: id-web, which Brook runs as (Azure OpenAI, PostgreSQL
//     as a role owning only Brook's tables), and id-db, the PostgreSQL Entra administrator that
//     `brook db setup` uses at start to create that role and the database
//   - Log Analytics + Application Insights (OpenTelemetry traces and logs, never prompts)
//   - a Key Vault holding the secrets (SECRET_KEY, REDIS_URL, a password DATABASE_URL, an OIDC
//     client secret): the app settings are Key Vault references, which App Service resolves as
//     the app's identity
//   - optionally Azure Managed Redis, for several instances or workers
// infra/main.parameters.json maps every parameter to an azd environment variable.
targetScope = 'subscription'

metadata description = 'Brook: App Service + PostgreSQL Flexible Server + Azure OpenAI, keyless.'

// ----------------------------------------------------------------------------------------------
// Environment
// ----------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: the resource group is rg-<name> and names derive from it.')
param environmentName string

@minLength(1)
@description('Region for every resource. PostgreSQL is not offered to every subscription everywhere: on "location is restricted", try another region such as centralus.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of whoever runs azd (azd sets AZURE_PRINCIPAL_ID): made a PostgreSQL Entra administrator and an Azure OpenAI user, for local development. Empty: nobody.')
param principalId string = ''

@description('What principalId is: User on a workstation, ServicePrincipal in CI.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

// ----------------------------------------------------------------------------------------------
// App Service
// ----------------------------------------------------------------------------------------------

@description('App Service plan SKU. F1: free tier (no always-on, 32-bit worker, 60 CPU minutes a day, no VNet integration). B1 and up: production.')
@allowed([
  'F1'
  'B1'
  'B2'
  'B3'
  'S1'
  'P0v3'
  'P1v3'
  'P2v3'
])
param appServiceSku string = 'B1'

@description('App Service instances. More than one needs enableRedis; F1 runs one, Basic (B1-B3) at most 3, S1 at most 10, Premium v3 at most 30.')
@minValue(1)
@maxValue(30)
param instanceCount int = 1

@description('gunicorn worker processes per instance (WEB_CONCURRENCY); each gevent worker holds thousands of streams. More than one needs enableRedis.')
@minValue(1)
@maxValue(16)
param webConcurrency int = 1

@description('Answers one visitor may start per minute (0: no limit).')
@minValue(0)
param limitAnswersPerMinute int = 10

@description('Answers of one visitor being written at once (0: no limit).')
@minValue(0)
param limitConcurrentAnswers int = 2

@description('Tokens one visitor may use per day, UTC (0: no limit).')
@minValue(0)
param limitTokensPerDay int = 200000

@description('Conversations one visitor may start per day (0: no limit).')
@minValue(0)
param limitConversationsPerDay int = 100

@description('Conversations one visitor may keep (0: no limit).')
@minValue(0)
param limitStoredConversations int = 1000

@description('Tokens the whole deployment may use per day, all visitors together: a ceiling on the cost of a day (0: none).')
@minValue(0)
param budgetTokensPerDay int = 2000000

// Signed-in users' limits, where they differ from everyone's: -1 (the default) sets nothing, so
// a signed-in user has the limit above; 0 turns one off for them.

@description('Answers one signed-in user may start per minute (0: no limit; -1: limitAnswersPerMinute).')
@minValue(-1)
param signedInLimitAnswersPerMinute int = -1

@description('Answers of one signed-in user being written at once (0: no limit; -1: limitConcurrentAnswers).')
@minValue(-1)
param signedInLimitConcurrentAnswers int = -1

@description('Tokens one signed-in user may use per day, UTC (0: no limit; -1: limitTokensPerDay).')
@minValue(-1)
param signedInLimitTokensPerDay int = -1

@description('Conversations one signed-in user may start per day (0: no limit; -1: limitConversationsPerDay).')
@minValue(-1)
param signedInLimitConversationsPerDay int = -1

@description('Conversations one signed-in user may keep (0: no limit; -1: limitStoredConversations).')
@minValue(-1)
param signedInLimitStoredConversations int = -1

@description('Python version of the App Service runtime.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.12'

@description('public: PostgreSQL has a public endpoint behind firewall rules (works with F1). vnet: PostgreSQL is private in a VNet and the app reaches it through VNet integration (B1 and up).')
@allowed([
  'public'
  'vnet'
])
param networkMode string = 'public'

// ----------------------------------------------------------------------------------------------
// Sign-in (docs/deploy.md, "Before you share the address"). Each is an app setting only when
// given: empty leaves the setting unset, so Brook's own default applies.
// ----------------------------------------------------------------------------------------------

@description('AUTH_MODE, who may use Brook. anonymous: anyone, each browser its own owner. appservice: the users App Service Authentication signs in (turn it on for the site, docs/deploy.md). oidc: Brook signs people in with an OpenID Connect provider (oidcIssuer, oidcClientId, oidcClientSecret). Empty: appservice where App Service Authentication is on, else anonymous.')
@allowed([
  ''
  'anonymous'
  'appservice'
  'oidc'
])
param authMode string = ''

@description('OIDC_ISSUER, the OpenID provider\'s https:// issuer URL, such as https://login.microsoftonline.com/<tenant id>/v2.0, https://accounts.google.com or https://<keycloak>/realms/<realm>. Required with authMode oidc.')
param oidcIssuer string = ''

@description('OIDC_CLIENT_ID, the client id the provider gave Brook when you registered it with the redirect URI https://<site>/auth/callback. Required with authMode oidc.')
param oidcClientId string = ''

@secure()
@description('OIDC_CLIENT_SECRET, the client secret the provider gave Brook: written to the Key Vault, and the site gets a Key Vault reference to it. Empty: none (a public client, which PKCE protects).')
param oidcClientSecret string = ''

@description('OIDC_SCOPES, the scopes Brook asks the provider for, separated by spaces, openid among them. Empty: openid email profile.')
param oidcScopes string = ''

@description('AUTH_ALLOWED_EMAILS, the only e-mail addresses that may sign in (with authAllowedDomains: or those domains), separated by commas. Empty: no list.')
param authAllowedEmails string = ''

@description('AUTH_ALLOWED_DOMAINS, the only e-mail domains that may sign in (with authAllowedEmails: or those addresses), such as example.com, separated by commas. Empty: no list.')
param authAllowedDomains string = ''

@description('ADMIN_EMAILS, the signed-in users who have no limits and see every owner\'s usage: e-mail addresses separated by commas. Empty: nobody.')
param adminEmails string = ''

// ----------------------------------------------------------------------------------------------
// PostgreSQL
// ----------------------------------------------------------------------------------------------

@description('PostgreSQL major version (cannot be changed after creation).')
@allowed([
  '14'
  '15'
  '16'
  '17'
])
param postgresVersion string = '16'

@description('PostgreSQL compute SKU.')
param postgresSkuName string = 'Standard_B1ms'

@description('Tier of postgresSkuName.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage in GiB (can grow later, never shrink).')
@allowed([
  32
  64
  128
  256
  512
  1024
  2048
  4096
  8192
  16384
])
param postgresStorageSizeGB int = 32

@minLength(1)
@maxLength(63)
@description('The database Brook uses (a PostgreSQL name: at most 63 bytes). No template creates it: `brook db setup`, in the start-up command, creates it owned by the database administrator identity and gives Brook\'s role its rights there.')
param databaseName string = 'brook'

@description('Single IPv4 addresses allowed through the PostgreSQL firewall in public mode, e.g. your workstation, separated by commas (azd env set POSTGRES_ALLOWED_IPS 203.0.113.7,198.51.100.2).')
param allowedSingleIPs string = ''

@description('Public mode: add the 0.0.0.0 firewall rule, through which the app (and any Azure service of any tenant) reaches the server; sign-in is still required. Ignored in vnet mode.')
param allowAzureServices bool = true

@description('entra: Brook signs in to PostgreSQL as its managed identity with a Microsoft Entra token, passwords are off. password: Brook uses the admin login and password instead.')
@allowed([
  'entra'
  'password'
])
param postgresAuth string = 'entra'

@description('Password administrator login, created with the server (usable only with postgresAuth password).')
param postgresAdminLogin string = 'brookadmin'

@secure()
@description('Password administrator password: no default, azd generates it and keeps it in .azure/<env>/config.json.')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 32
      noSpecial: true
      minLower: 4
      minUpper: 4
      minNumeric: 4
    }
  }
})
param postgresAdminPassword string

@description('Run `brook db setup` in the start-up command, before `brook db upgrade`: it creates Brook\'s role and database if missing and grants the rights (idempotent). With entra auth the site then also holds the database administrator identity. Set it false once the database exists to take that identity off the site (docs/deploy.md).')
param postgresSetupOnStart bool = true

// ----------------------------------------------------------------------------------------------
// Azure OpenAI
// ----------------------------------------------------------------------------------------------

@description('An existing Azure OpenAI account to use instead of creating one (its deployment must exist). Empty: create one.')
param openAiAccountName string = ''

@description('Resource group of openAiAccountName. Empty: the environment\'s resource group.')
param openAiResourceGroupName string = ''

@description('Region of the new Azure OpenAI account, where the model is offered. Empty: location.')
param openAiLocation string = ''

@description('Chat model of the new deployment.')
param chatModelName string = 'gpt-4.1-mini'

@description('Version of chatModelName.')
param chatModelVersion string = '2025-04-14'

@description('Name of the chat deployment (AZURE_OPENAI_DEPLOYMENT). Empty: named after chatModelName.')
param chatDeploymentName string = ''

@description('Deployment type: GlobalStandard, DataZoneStandard or Standard.')
param chatDeploymentSku string = 'GlobalStandard'

@description('Deployment capacity in thousands of tokens per minute (within your quota).')
@minValue(1)
param chatDeploymentCapacity int = 30

@description('Azure OpenAI API version Brook calls (AZURE_OPENAI_API_VERSION).')
param openAiApiVersion string = '2024-10-21'

// ----------------------------------------------------------------------------------------------
// Models people pick (README, Models; docs/deploy.md, "Several models"). Each is an app setting
// only when asked for: empty (or true) leaves it unset, so Brook's default applies.
// ----------------------------------------------------------------------------------------------

@description('MODELS: more Azure OpenAI models people may pick per conversation, next to the chat deployment (the first, and the default unless an entry says default). A JSON list of { id, name, model (the deployment; default the id), api (chat or responses), api_version (default openAiApiVersion; responses needs 2025-03-01-preview or later), reasoning_summary (auto, concise or detailed), temperature (false for reasoning models), default }, and for the deployment the templates create on the account they create: model_name (default the deployment), model_version (default the model\'s default), sku and capacity (default the chat deployment\'s). No keys, endpoints or providers: each is a deployment of the account, called keylessly as the site\'s identity, at AZURE_OPENAI_ENDPOINT. With an existing account (openAiAccountName) the deployments must exist. Empty: the chat deployment alone, and no MODELS setting.')
param models array = []

@description('MODEL_TITLES: after a conversation\'s first answer, ask its model for a title of a few words (one short request more). false: the first words of the first message stay the title.')
param modelTitles bool = true

// ----------------------------------------------------------------------------------------------
// Redis and Brook
// ----------------------------------------------------------------------------------------------

@description('Create Azure Managed Redis and set REDIS_URL: required for more than one instance or worker.')
param enableRedis bool = false

@description('Azure Managed Redis SKU.')
param redisSku string = 'Balanced_B0'

@secure()
@description('SECRET_KEY: signs the owner cookie, the same on every instance. No default: azd generates it once and keeps it in .azure/<env>/config.json.')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 64
      noSpecial: true
    }
  }
})
param secretKey string

// ----------------------------------------------------------------------------------------------
// Guards: impossible combinations stop the deployment before anything is created. The values
// are used in the resource group's tags, the first thing ARM evaluates, so preflight fails.
// ----------------------------------------------------------------------------------------------

var checkedNetworkMode = ((appServiceSku == 'F1') && (networkMode == 'vnet')) ? fail('networkMode vnet needs App Service B1 or higher: the free tier (F1) has no VNet integration. Use networkMode public with F1 (azd env set NETWORK_MODE public), or a paid SKU (azd env set APP_SERVICE_SKU B1).') : networkMode
var maxInstances = (appServiceSku == 'F1') ? 1 : (contains(['B1', 'B2', 'B3'], appServiceSku) ? 3 : ((appServiceSku == 'S1') ? 10 : 30))
var checkedScale = (((instanceCount > 1) || (webConcurrency > 1)) && (!enableRedis)) ? fail('Several instances or workers share live answers through Redis: set ENABLE_REDIS true, or INSTANCE_COUNT and WEB_CONCURRENCY to 1.') : (((appServiceSku == 'F1') && (instanceCount > 1)) ? fail('The free tier (F1) runs one instance: set INSTANCE_COUNT 1 or a paid SKU.') : ((instanceCount > maxInstances) ? fail('The App Service plan runs fewer instances than INSTANCE_COUNT: Basic (B1-B3) at most 3, S1 at most 10, Premium v3 at most 30. Lower INSTANCE_COUNT or choose a larger APP_SERVICE_SKU.') : instanceCount))
// Brook refuses to start with AUTH_MODE=oidc and no issuer or client id, or an issuer that is
// not https: a deployment that could only fail at start stops here instead.
var checkedAuthMode = ((authMode == 'oidc') && (empty(oidcIssuer) || empty(oidcClientId))) ? fail('AUTH_MODE oidc needs the issuer of your OpenID provider and the client id it gave Brook: azd env set OIDC_ISSUER <issuer URL> and azd env set OIDC_CLIENT_ID <client id> (docs/deploy.md, "Before you share the address").') : (((!empty(oidcIssuer)) && (!startsWith(oidcIssuer, 'https://'))) ? fail('OIDC_ISSUER must be the https:// issuer URL of your OpenID provider, such as https://login.microsoftonline.com/<tenant id>/v2.0 or https://accounts.google.com.') : authMode)

// MODELS as Brook would refuse it at start, or as the deployments it asks for could not be made.
// Variables' for-expressions (no lambdas: checkov's Bicep parser cannot read them); ternaries
// rather than && where a property may be missing, since ARM evaluates both sides of and().
var modelIdsGiven = [for entry in models: entry.id]
var modelIds = concat([chatDeployment], modelIdsGiven)
var modelDeploymentsGiven = [for entry in models: contains(entry, 'model') ? entry.model : entry.id]
var modelDeploymentNames = concat([chatDeployment], modelDeploymentsGiven)
var modelDefaults = [for entry in models: contains(entry, 'default') ? entry.default : false]
var modelNotKeyless = [for entry in models: contains(entry, 'api_key') || contains(entry, 'endpoint') || contains(entry, 'base_url') || (contains(entry, 'provider') ? ((entry.provider) != 'azure') : false)]
var modelIdRepeated = [for (entry, i) in models: contains(take(modelIds, i + 1), entry.id)]
var modelDefaultRepeated = [for (entry, i) in models: (contains(entry, 'default') ? entry.default : false) ? contains(take(modelDefaults, i), true) : false]
var modelDeploymentRepeated = [for (entry, i) in models: contains(take(modelDeploymentNames, i + 1), contains(entry, 'model') ? entry.model : entry.id)]
var modelValueWrong = [for entry in models: (contains(entry, 'api') ? (!contains(['chat', 'responses'], entry.api)) : false) || (contains(entry, 'reasoning_summary') ? (!contains(['auto', 'concise', 'detailed'], entry.reasoning_summary)) : false)]
var modelResponsesTooOld = [for entry in models: (contains(entry, 'api') ? ((entry.api) == 'responses') : false) ? ((contains(entry, 'api_version') ? entry.api_version : openAiApiVersion) < '2025-03-01-preview') : false]
var checkedModels = contains(modelNotKeyless, true) ? fail('MODELS on Azure holds deployments of the templates\' Azure OpenAI account, which the site calls keylessly as its identity: leave out api_key, endpoint, base_url and provider (docs/deploy.md, "Several models").') : (contains(modelIdRepeated, true) ? fail('MODELS names a model id twice, or the chat deployment\'s (AZURE_OPENAI_DEPLOYMENT), which is offered first already: give each model an id of its own.') : (contains(modelDefaultRepeated, true) ? fail('MODELS marks more than one model as the default: mark one (or none, and the chat deployment is the default).') : (contains(modelValueWrong, true) ? fail('MODELS: api is chat or responses, and reasoning_summary auto, concise or detailed (README, Models).') : (contains(modelResponsesTooOld, true) ? fail('MODELS: a model with api responses needs an api_version of 2025-03-01-preview or later (give it one, or set AZURE_OPENAI_API_VERSION).') : (((!useExistingOpenAi) && contains(modelDeploymentRepeated, true)) ? fail('MODELS: the templates create a deployment for each model on the account they create, so each needs a deployment (model, else its id) of its own, other than the chat deployment (AZURE_OPENAI_DEPLOYMENT). To offer one deployment twice, create it yourself and name the account with AZURE_OPENAI_ACCOUNT_NAME.') : models)))))

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var privateNetwork = (checkedNetworkMode == 'vnet')
var identityName = 'id-web-${resourceToken}'
var databaseAdminName = 'id-db-${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'
var postgresServerName = 'psql-${resourceToken}'
var useExistingOpenAi = !empty(openAiAccountName)
var developerPostgresRole = 'azd-${take(uniqueString(principalId), 8)}'
// Named after the model unless AZURE_OPENAI_DEPLOYMENT names it: choosing another model with
// AZURE_OPENAI_CHAT_MODEL alone gives a deployment named after that model.
var chatDeployment = empty(chatDeploymentName) ? chatModelName : chatDeploymentName
// The deployments MODELS asks for, which the templates create when they create the account.
var modelDeployments = [for entry in checkedModels: {
  name: contains(entry, 'model') ? entry.model : entry.id
  model: contains(entry, 'model_name') ? entry.model_name : (contains(entry, 'model') ? entry.model : entry.id)
  version: contains(entry, 'model_version') ? entry.model_version : ''
  sku: contains(entry, 'sku') ? entry.sku : chatDeploymentSku
  capacity: contains(entry, 'capacity') ? entry.capacity : chatDeploymentCapacity
}]
// No lambdas (filter, map): checkov's Bicep parser cannot read them.
var allowedIps = empty(trim(allowedSingleIPs)) ? [] : split(replace(allowedSingleIPs, ' ', ''), ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: union(tags, {
    'brook-network-mode': checkedNetworkMode
    'brook-instances': string(checkedScale)
    'brook-auth-mode': empty(checkedAuthMode) ? 'default' : checkedAuthMode
    'brook-models': string(length(checkedModels))
  })
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

// PostgreSQL's Microsoft Entra administrator, used by `brook db setup` only; Brook's own identity
// is no administrator (least privilege).
module databaseAdmin 'modules/identity.bicep' = {
  name: 'database-admin-identity'
  scope: rg
  params: {
    name: databaseAdminName
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: identity.outputs.principalId
  }
}

// The secrets, readable by the app's identity alone.
module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    readerPrincipalId: identity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    secretKey: secretKey
  }
}

module network 'modules/network.bicep' = if (privateNetwork) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
    postgresServerName: postgresServerName
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    name: postgresServerName
    location: location
    tags: tags
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    allowedSingleIPs: allowedIps
    allowAzureServices: allowAzureServices
    delegatedSubnetId: privateNetwork ? network!.outputs.databaseSubnetId : ''
    privateDnsZoneId: privateNetwork ? network!.outputs.privateDnsZoneId : ''
    authMode: postgresAuth
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    administratorLogin: postgresAdminLogin
    administratorLoginPassword: postgresAdminPassword
    // The administrators: the database administrator identity and whoever runs azd. Brook's own
    // identity is not one: `brook db setup` gives it a role of its own (pgaadauth_create_principal).
    entraAdministrators: concat([
      {
        objectId: databaseAdmin.outputs.principalId
        name: databaseAdminName
        type: 'ServicePrincipal'
      }
    ], empty(principalId) ? [] : [
      {
        objectId: principalId
        name: developerPostgresRole
        type: principalType
      }
    ])
  }
}

module openAi 'modules/openai.bicep' = if (!useExistingOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    deploymentName: chatDeployment
    modelName: chatModelName
    modelVersion: chatModelVersion
    deploymentSku: chatDeploymentSku
    deploymentCapacity: chatDeploymentCapacity
    deployments: modelDeployments
  }
}

module openAiAccess 'modules/openai-access.bicep' = {
  name: 'openai-access'
  scope: az.resourceGroup(empty(openAiResourceGroupName) ? rg.name : openAiResourceGroupName)
  params: {
    accountName: useExistingOpenAi ? openAiAccountName : openAi!.outputs.name
    principals: concat([
      {
        id: identity.outputs.principalId
        type: 'ServicePrincipal'
      }
    ], empty(principalId) ? [] : [
      {
        id: principalId
        type: principalType
      }
    ])
  }
  dependsOn: [
    rg
  ]
}

module redis 'modules/redis.bicep' = if (enableRedis) {
  name: 'redis'
  scope: rg
  params: {
    name: 'redis-${resourceToken}'
    location: location
    tags: tags
    skuName: redisSku
    keyVaultName: keyVault.outputs.name
  }
}

// With Entra sign-in DATABASE_URL holds no secret (the password is a fresh token); with a
// password it goes to the Key Vault.
var entraDatabaseAuth = (postgresAuth == 'entra')
var entraDatabaseUrl = 'postgresql://${identityName}@${postgres.outputs.fqdn}:5432/${databaseName}?sslmode=require'
var passwordDatabaseUrl = 'postgresql://${postgresAdminLogin}:${uriComponent(postgresAdminPassword)}@${postgres.outputs.fqdn}:5432/${databaseName}?sslmode=require'

module databaseUrlSecret 'modules/keyvault-secret.bicep' = if (!entraDatabaseAuth) {
  name: 'database-url-secret'
  scope: rg
  params: {
    vaultName: keyVault.outputs.name
    name: 'database-url'
    value: passwordDatabaseUrl
  }
}

// OIDC_CLIENT_SECRET, when there is one, as DATABASE_URL's password is.
module oidcSecret 'modules/keyvault-secret.bicep' = if (!empty(oidcClientSecret)) {
  name: 'oidc-client-secret'
  scope: rg
  params: {
    vaultName: keyVault.outputs.name
    name: 'oidc-client-secret'
    value: oidcClientSecret
  }
}

// The start-up command. `brook db setup` signs in to the server's postgres database as an
// administrator and creates Brook's role and database if missing (idempotent, under an advisory
// lock); `brook db upgrade` then migrates as Brook's role, which owns the tables; then gunicorn
// with gevent workers. With Entra auth the administrator is the id-db identity, whose token the
// site asks for by its client id, and Brook's role is made for the id-web identity's object id.
// With passwords the administrator is DATABASE_URL's own user.
var serveCommand = 'brook db upgrade && brook serve --host 0.0.0.0 --port 8000'
var setupCommand = entraDatabaseAuth ? 'brook db setup --admin-role ${databaseAdminName} --admin-client-id ${databaseAdmin.outputs.clientId} --app-object-id ${identity.outputs.principalId}' : 'brook db setup'
var startupCommand = postgresSetupOnStart ? '${setupCommand} && ${serveCommand}' : serveCommand
// The site holds the administrator identity only while the start-up command signs in with it.
var siteHoldsDatabaseAdmin = postgresSetupOnStart && entraDatabaseAuth

// What Brook reads in production; tests/test_infra.py holds these names to the variables the
// app reads (no missing one, no stale one). The secret ones are in secretSettings and
// redisSettings below, the sign-in ones in authSettings.
var appSettings = {
  // App Service builds the upload (infra/app/package.sh) with Oryx: `pip install -r
  // requirements.txt`, whose one line `.` makes it `pip install .`.
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
  HOST: '0.0.0.0'
  PORT: '8000'
  WEB_CONCURRENCY: string(webConcurrency)
  LIMIT_ANSWERS_PER_MINUTE: string(limitAnswersPerMinute)
  LIMIT_CONCURRENT_ANSWERS: string(limitConcurrentAnswers)
  LIMIT_TOKENS_PER_DAY: string(limitTokensPerDay)
  LIMIT_CONVERSATIONS_PER_DAY: string(limitConversationsPerDay)
  LIMIT_STORED_CONVERSATIONS: string(limitStoredConversations)
  BUDGET_TOKENS_PER_DAY: string(budgetTokensPerDay)
  TRUSTED_PROXIES: '1'
  MODEL_PROVIDER: 'azure'
  AZURE_OPENAI_ENDPOINT: openAiAccess.outputs.endpoint
  AZURE_OPENAI_DEPLOYMENT: chatDeployment
  AZURE_OPENAI_API_VERSION: openAiApiVersion
  AZURE_CLIENT_ID: identity.outputs.clientId
  DATABASE_ENTRA_AUTH: entraDatabaseAuth ? 'true' : 'false'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_ENTRA_AUTH: 'true'
}

// The settings that are secrets: Key Vault references, which App Service resolves at start as
// the app's identity (the site's keyVaultReferenceIdentity). Without a version in the URI, a new
// version of a secret reaches the app within 24 hours, or at the next configuration change.
var secretSettings = {
  SECRET_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.secretKeyUri})'
  DATABASE_URL: entraDatabaseAuth ? entraDatabaseUrl : '@Microsoft.KeyVault(SecretUri=${databaseUrlSecret!.outputs.uri})'
}
var redisSettings = enableRedis ? {
  REDIS_URL: '@Microsoft.KeyVault(SecretUri=${redis!.outputs.urlSecretUri})'
} : {}
// Sign-in and the signed-in limits, each only when given (an empty string, or -1 for a limit,
// sets nothing, and Brook's default applies); the client secret as a Key Vault reference.
var authSettings = union(
  empty(checkedAuthMode) ? {} : { AUTH_MODE: checkedAuthMode },
  empty(oidcIssuer) ? {} : { OIDC_ISSUER: oidcIssuer },
  empty(oidcClientId) ? {} : { OIDC_CLIENT_ID: oidcClientId },
  empty(oidcClientSecret) ? {} : { OIDC_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${oidcSecret!.outputs.uri})' },
  empty(oidcScopes) ? {} : { OIDC_SCOPES: oidcScopes },
  empty(authAllowedEmails) ? {} : { AUTH_ALLOWED_EMAILS: authAllowedEmails },
  empty(authAllowedDomains) ? {} : { AUTH_ALLOWED_DOMAINS: authAllowedDomains },
  empty(adminEmails) ? {} : { ADMIN_EMAILS: adminEmails },
  (signedInLimitAnswersPerMinute < 0) ? {} : { SIGNED_IN_LIMIT_ANSWERS_PER_MINUTE: string(signedInLimitAnswersPerMinute) },
  (signedInLimitConcurrentAnswers < 0) ? {} : { SIGNED_IN_LIMIT_CONCURRENT_ANSWERS: string(signedInLimitConcurrentAnswers) },
  (signedInLimitTokensPerDay < 0) ? {} : { SIGNED_IN_LIMIT_TOKENS_PER_DAY: string(signedInLimitTokensPerDay) },
  (signedInLimitConversationsPerDay < 0) ? {} : { SIGNED_IN_LIMIT_CONVERSATIONS_PER_DAY: string(signedInLimitConversationsPerDay) },
  (signedInLimitStoredConversations < 0) ? {} : { SIGNED_IN_LIMIT_STORED_CONVERSATIONS: string(signedInLimitStoredConversations) }
)

// MODELS, when models are given: the chat deployment first, then each of them, in the form
// Brook reads (README, Models: its fields alone, so no key). No endpoint either: Brook fills it in
// from AZURE_OPENAI_ENDPOINT, the account's (a variable's for-expression cannot hold a module
// output). MODEL_TITLES only when titles are turned off.
var chatModel = {
  id: chatDeployment
  name: chatDeployment
  provider: 'azure'
  model: chatDeployment
  api: 'chat'
  api_version: openAiApiVersion
  reasoning_summary: null
  temperature: true
  default: false
}
var pickedModels = [for entry in checkedModels: {
  id: entry.id
  name: contains(entry, 'name') ? entry.name : entry.id
  provider: 'azure'
  model: contains(entry, 'model') ? entry.model : entry.id
  api: contains(entry, 'api') ? entry.api : 'chat'
  api_version: contains(entry, 'api_version') ? entry.api_version : openAiApiVersion
  reasoning_summary: contains(entry, 'reasoning_summary') ? entry.reasoning_summary : null
  temperature: contains(entry, 'temperature') ? entry.temperature : true
  default: contains(entry, 'default') ? entry.default : false
}]
var modelSettings = union(
  empty(checkedModels) ? {} : { MODELS: string(concat([chatModel], pickedModels)) },
  modelTitles ? {} : { MODEL_TITLES: 'false' }
)

module web 'modules/appservice.bicep' = {
  name: 'web'
  scope: rg
  params: {
    planName: 'plan-${resourceToken}'
    siteName: 'app-${resourceToken}'
    location: location
    tags: tags
    sku: appServiceSku
    instanceCount: checkedScale
    pythonVersion: pythonVersion
    identityId: identity.outputs.id
    databaseAdminIdentityId: siteHoldsDatabaseAdmin ? databaseAdmin.outputs.id : ''
    startupCommand: startupCommand
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    virtualNetworkSubnetId: privateNetwork ? network!.outputs.webSubnetId : ''
    appSettings: union(appSettings, secretSettings, redisSettings, authSettings, modelSettings)
  }
}

// azd writes these to .azure/<env>/.env. The AZURE_OPENAI_* ones are Brook's own variables, so
// `azd env get-values` gives a developer what Brook needs to use this Azure OpenAI keylessly.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_OPENAI_ENDPOINT string = openAiAccess.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = chatDeployment
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output SERVICE_WEB_NAME string = web.outputs.name
output SERVICE_WEB_URI string = web.outputs.uri
output POSTGRES_HOST string = postgres.outputs.fqdn
output POSTGRES_DATABASE string = databaseName
output POSTGRES_ADMIN_ROLE string = databaseAdminName
output POSTGRES_DEVELOPER_ROLE string = empty(principalId) ? '' : developerPostgresRole
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
