import { Duration } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { KafkaEsmStackProps, architectureFromName } from './kafka-esm-stack';

/**
 * Reads the example stack's inputs from CDK context (cdk.json holds example values; override with
 * `-c key=value`, lists comma-separated). The keys are the SAM template's parameter names in
 * camelCase, so one set of values deploys either way (infra/test/parity.test.ts relies on it).
 */
export function stackPropsFromContext(scope: Construct): KafkaEsmStackProps {
  const context = (key: string): string | undefined => {
    const value: unknown = scope.node.tryGetContext(key);
    if (value === undefined || value === null || value === '') return undefined;
    return Array.isArray(value) ? value.join(',') : String(value);
  };
  const required = (key: string): string => {
    const value = context(key);
    if (value === undefined) throw new Error(`context value '${key}' is required (cdk.json or -c ${key}=...)`);
    return value;
  };
  const list = (key: string): string[] =>
    (context(key) ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const number = (key: string): number | undefined => {
    const value = context(key);
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed)) throw new Error(`context value '${key}' must be a number, got ${value}`);
    return parsed;
  };
  const flag = (key: string, fallback = false): boolean => {
    const value = context(key) ?? String(fallback);
    if (value !== 'true' && value !== 'false') throw new Error(`context value '${key}' must be true or false, got ${value}`);
    return value === 'true';
  };
  const timeoutSeconds = number('timeoutSeconds');
  const drainTimeoutSeconds = number('drainTimeoutSeconds');
  const noPollerAlarmMinutes = number('noPollerAlarmMinutes');
  const routeTableIds = list('routeTableIds');

  return {
    env: { account: required('account'), region: required('region') },
    description: 'kafka-esm: self-hosted Kafka event source mapping for AWS Lambda',
    network: {
      vpcId: required('vpcId'),
      availabilityZones: list('availabilityZones'),
      subnetIds: list('subnetIds'),
      // None given: none at all (an empty list would not match the subnets).
      routeTableIds: routeTableIds.length > 0 ? routeTableIds : undefined,
      securityGroupId: required('securityGroupId'),
    },
    kafkaEsm: {
      // Empty: self-managed Kafka.
      eventSourceArn: context('clusterArn'),
      functionArns: list('targetFunctionArns'),
      sourceAccessSecretArns: list('secretArns'),
      sourceAccessSecretKmsKeyArns: list('secretKmsKeyArns'),
      onFailureQueueArns: list('onFailureQueueArns'),
      onFailureTopicArns: list('onFailureTopicArns'),
      onFailureBucketArns: list('onFailureBucketArns'),
      iamAuthentication: flag('iamAuthentication'),
      maximumPollers: number('maximumPollers'),
      reserveConcurrency: flag('reserveConcurrency', true),
      drainTimeout: drainTimeoutSeconds === undefined ? undefined : Duration.seconds(drainTimeoutSeconds),
      architecture: architectureFromName(context('architecture')),
      timeout: timeoutSeconds === undefined ? undefined : Duration.seconds(timeoutSeconds),
      memorySize: number('memorySize'),
      logRetention: number('logRetentionDays'),
      logLevel: context('logLevel'),
      vpcEndpoints: flag('vpcEndpoints'),
      codePath: context('codePath'),
      alarms: flag('alarms'),
      offsetLagAlarmThreshold: number('offsetLagAlarmThreshold'),
      noPollerAlarmPeriod: noPollerAlarmMinutes === undefined ? undefined : Duration.minutes(noPollerAlarmMinutes),
      metricsNamespace: context('metricsNamespace'),
    },
    alarmTopicArn: context('alarmTopicArn'),
    permissionsBoundaryArn: context('permissionsBoundaryArn'),
    eventSourceProvider: flag('eventSourceProvider'),
  };
}
